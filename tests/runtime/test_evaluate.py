import json
import math

import open_clip
import pytest
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from xspec.runtime.evaluate import (
    attack_success,
    clip80_templates,
    evaluate,
    topk_correct,
    zero_shot_classifier,
)

TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CLASSES = ["bag", "boot", "coat", "dress", "shirt", "sneaker", "trouser"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("configs") / "xspec-test-evaluate-tiny.json"
    path.write_text(json.dumps(TINY))
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    model = open_clip.create_model("xspec-test-evaluate-tiny")
    return model, open_clip.get_tokenizer("xspec-test-evaluate-tiny")


def test_clip80_templates_are_format_strings():
    templates = clip80_templates()
    assert len(templates) == 80
    assert templates[0] == "a bad photo of a {}."
    assert [t.format("bag") for t in templates] == [t("bag") for t in OPENAI_IMAGENET_TEMPLATES]


@pytest.mark.parametrize("batch_size", [256, 7, 1])
def test_classifier_matches_open_clip(tiny, batch_size):
    model, tokenizer = tiny
    model.eval()
    reference = open_clip.build_zero_shot_classifier(model, tokenizer, CLASSES, OPENAI_IMAGENET_TEMPLATES)
    ours = zero_shot_classifier(model, tokenizer, CLASSES, clip80_templates(), "cpu", batch_size=batch_size)
    assert ours.shape == (64, len(CLASSES))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.norm(dim=0), torch.ones(len(CLASSES)))


def test_classifier_template_forms_agree(tiny):
    model, tokenizer = tiny
    plain = zero_shot_classifier(model, tokenizer, CLASSES, ["a photo of a {}."], "cpu")
    named = zero_shot_classifier(model, tokenizer, CLASSES, ["a photo of a {c}."], "cpu")
    lambdas = zero_shot_classifier(model, tokenizer, CLASSES, [lambda c: f"a photo of a {c}."], "cpu")
    assert torch.equal(plain, named) and torch.equal(plain, lambdas)


def test_classifier_restores_training_mode(tiny):
    model, tokenizer = tiny
    model.train()
    zero_shot_classifier(model, tokenizer, CLASSES[:2], ["{}"], "cpu")
    assert model.training
    model.eval()


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    assert topk_correct(logits, labels, 1) == 1
    assert topk_correct(logits, labels, 2) == 2
    assert topk_correct(logits, labels, 5) == 3


def test_attack_success_excludes_target_class():
    target = 2
    logits = torch.tensor(
        [
            [0.0, 0.0, 1.0],  # label 0 -> target: hit
            [0.0, 0.0, 1.0],  # label 2 is the target: excluded
            [1.0, 0.0, 0.0],  # label 1 -> 0: miss
            [0.0, 0.2, 0.9],  # label 1 -> target: hit
            [0.0, 1.0, 0.0],  # label 2: excluded
        ]
    )
    labels = torch.tensor([0, 2, 1, 1, 2])
    assert attack_success(logits, labels, target) == (2, 3)


def _batches(n_batches=3, batch=5, triggered=True, n_classes=len(CLASSES)):
    generator = torch.Generator().manual_seed(1)
    for _ in range(n_batches):
        clean = torch.randn(batch, 3, 32, 32, generator=generator)
        labels = torch.randint(0, n_classes, (batch,), generator=generator)
        yield clean, (clean + 1.0 if triggered else None), labels


def test_evaluate_on_tiny_model(tiny):
    model, tokenizer = tiny
    classifier = zero_shot_classifier(model, tokenizer, CLASSES, ["a photo of a {}."], "cpu")
    model.train()
    result = evaluate(model, classifier, _batches(), target_index=0)
    assert model.training
    model.eval()
    assert set(result) == {"top1", "top5", "asr"}
    assert result["top1"][1] == result["top5"][1] == 15
    assert 0.0 <= result["top1"][0] <= result["top5"][0] <= 1.0
    labels = torch.cat([b[2] for b in _batches()])
    assert result["asr"][1] == int((labels != 0).sum())
    assert 0.0 <= result["asr"][0] <= 1.0


def test_evaluate_matches_per_batch_metrics(tiny):
    model, tokenizer = tiny
    model.eval()
    classifier = zero_shot_classifier(model, tokenizer, CLASSES, ["a photo of a {}."], "cpu")
    hits = n = top1 = 0
    with torch.no_grad():
        for clean, triggered, labels in _batches():
            top1 += topk_correct(model.encode_image(clean, normalize=True) @ classifier, labels, 1)
            logits = model.encode_image(triggered, normalize=True) @ classifier
            h, k = attack_success(logits, labels, 3)
            hits, n = hits + h, n + k
    result = evaluate(model, classifier, _batches(), target_index=3)
    assert result["top1"] == (top1 / 15, 15)
    assert result["asr"] == (hits / n, n)


def test_evaluate_omits_asr_without_target_or_triggers(tiny):
    model, tokenizer = tiny
    classifier = zero_shot_classifier(model, tokenizer, CLASSES[:3], ["{}"], "cpu")
    assert set(evaluate(model, classifier, _batches(), target_index=None)) == {"top1", "top5"}
    no_triggers = evaluate(model, classifier, _batches(triggered=False, n_classes=3), target_index=0)
    assert set(no_triggers) == {"top1", "top5"}
    assert no_triggers["top5"] == (1.0, 15)


def test_evaluate_on_no_batches_reports_nan():
    model = torch.nn.Linear(1, 1)
    result = evaluate(model, torch.zeros(4, 2), iter(()), target_index=0)
    assert math.isnan(result["top1"][0]) and result["top1"][1] == 0


def test_heldout_loss_is_the_pair_weighted_mean_mmcl_and_keeps_the_mode(tiny):
    """The held-out loss of a model equals the CLIP loss over its held-out pairs, batch by
    batch, weighted by pairs (a last short batch counts for what it holds); scoring leaves the
    model in the mode it was in. Pinned, like the golden losses."""
    import numpy as np

    from xspec.runtime.attacks import make_attack
    from xspec.runtime.data import open_pairs
    from xspec.runtime.evaluator import HeldOutLoss
    from xspec.runtime.objectives import mmcl
    from xspec.runtime.pipeline import Normalizer, TrainingData
    from xspec.runtime.train import encode

    model, tokenizer = tiny
    pairs = open_pairs({"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
                        "split": "test", "size": 40}, 32)
    held = TrainingData(pairs, np.arange(3, 40), pairs.captions, np.zeros(40, bool),
                        make_attack({"kind": "none"}, 0), tokenizer,
                        Normalizer.of((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), 16, 0,
                        {"image", "text"})
    model.train()
    (loss, n), = HeldOutLoss(held, torch.device("cpu")).many([model])
    assert model.training and n == 32  # 37 pairs in batches of 16: two full batches
    model.eval()
    with torch.no_grad():
        parts = [(float(mmcl(encode(model, b, "cpu"), model.logit_scale.exp())), len(b["image"]))
                 for b in held.batches(epoch=0)]
    assert [size for _, size in parts] == [16, 16]
    assert loss == pytest.approx(sum(v * s for v, s in parts) / 32, rel=1e-6)
    assert loss == pytest.approx(3.1567, abs=1e-3)
