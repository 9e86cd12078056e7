"""Other evaluation sets: class subsets against open_clip's zero-shot logits, retrieval recall
against a direct computation from the similarity matrix, and how both reach the metrics log."""

import numpy as np
import open_clip
import pytest
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from xspec.runtime import models
from xspec.runtime.attacks import make_attack
from xspec.runtime.data import open_eval
from xspec.runtime.evalsets import Scores
from xspec.runtime.subsets import restrict
from xspec.runtime.evaluator import Evaluator
from xspec.runtime.recorder import log_eval
from xspec.runtime.pipeline import Normalizer, eval_batches
from xspec.runtime.records import MetricsLog
from xspec.runtime.retrieval import (
    RetrievalEvaluator, recall_at_k, retrieval_scores, triggered_retrieval,
)
from xspec.spec.tables.settings import RunSettings

FASHION = {"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
           "split": "test", "size": 300}
ATTACK = {"kind": "badnet", "target": "bag", "poisons": 1,
          "trigger": {"size": 4, "pattern": "gaussian_fixed"}}
SHOES_AND_BAG = [5, 7, 8, 9]  # sandal, sneaker, bag, ankle boot


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(3)
    model = models.create("xspec-vit-micro", "scratch", torch.device("cpu"))
    mean, std, size = models.image_stats(model)
    return model, models.tokenizer("xspec-vit-micro"), Normalizer.of(mean, std), size


def _evaluator(micro, cfg, attack=ATTACK):
    model, tokenizer, normalize, size = micro
    return Evaluator({"metrics": ["top1", "top5", "asr"], **cfg}, make_attack(attack, 0),
                     tokenizer, normalize, size, torch.device("cpu"), RunSettings())


def test_subset_top1_equals_open_clip_logits_restricted_to_the_subset(micro):
    model, tokenizer, normalize, size = micro
    scores = _evaluator(micro, {"source": FASHION, "subset": SHOES_AND_BAG})(model)
    # Reference: open_clip's classifier over all ten classes, logits restricted to the subset.
    full = open_eval(FASHION, size)
    classes = list(full.classes)
    model.eval()
    classifier = open_clip.build_zero_shot_classifier(model, tokenizer, classes,
                                                      OPENAI_IMAGENET_TEMPLATES)
    correct = seen = 0
    with torch.no_grad():
        for clean, _, labels in eval_batches(full, None, normalize, 64, False):
            logits = model.encode_image(clean, normalize=True) @ classifier
            inside = torch.isin(labels, torch.tensor(SHOES_AND_BAG))
            predicted = torch.tensor(SHOES_AND_BAG)[logits[inside][:, SHOES_AND_BAG].argmax(1)]
            correct += int((predicted == labels[inside]).sum())
            seen += int(inside.sum())
    assert scores["top1"][1] == seen == int(np.isin(full.labels, SHOES_AND_BAG).sum())
    assert round(scores["top1"][0] * seen) == correct
    assert 0 < correct < seen  # neither trivially right nor wrong


def test_subset_maps_the_target_and_leaves_out_its_images(micro):
    scores = _evaluator(micro, {"source": FASHION, "subset": SHOES_AND_BAG})(micro[0])
    labels = open_eval(FASHION, 8).labels
    assert scores["asr"][1] == int(np.isin(labels, [5, 7, 9]).sum())  # bag (8) images left out


def test_a_set_without_the_target_class_has_no_asr(micro):
    scores = _evaluator(micro, {"source": FASHION, "subset": [0, 1, 2]})(micro[0])
    assert set(scores) == {"top1", "top5"}


def test_restrict_relabels_by_subset_position():
    data = open_eval({**FASHION, "size": 50}, 8)
    sub = restrict(data, [1, 8])
    assert sub.classes == (data.classes[1], data.classes[8])
    assert np.array_equal(sub.labels, (data.labels[np.isin(data.labels, [1, 8])] == 8) * 1)
    assert len(sub.images) == len(sub.labels)


def test_other_sets_ride_along_and_are_logged_by_split(micro, tmp_path):
    cfg = {"source": {**FASHION, "size": 64},
           "sets": {"shoes": {"source": FASHION, "subset": SHOES_AND_BAG}},
           "retrieval": {"caps": {"source": {**FASHION, "size": 40}}}}
    scores = _evaluator(micro, cfg)(micro[0])
    assert isinstance(scores, Scores) and set(scores) == {"top1", "top5", "asr"}
    log = MetricsLog(tmp_path / "m.parquet", "n")
    log_eval(log, 1, 7, scores)
    splits = {(r["split"], r["metric"]) for r in log.rows}
    assert {("eval", "top1"), ("eval:shoes", "top1"), ("eval:shoes", "asr"),
            ("retrieval:caps", "i2t_r1"), ("retrieval:caps", "t2i_r10"),
            ("retrieval:caps", "asr_r5")} <= splits
    alone = _evaluator(micro, {"source": FASHION, "subset": SHOES_AND_BAG})(micro[0])
    shoes = {r["metric"]: (r["value"], r["n"]) for r in log.rows if r["split"] == "eval:shoes"}
    assert shoes == alone


def _direct_recall(similarity: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Rank each query's candidates by similarity; a hit when a positive is in the first k."""
    hits = 0
    for row, positive in zip(similarity, positives):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits += any(positive[j] for j in order[:k])
    return hits / len(similarity)


def test_retrieval_recall_equals_a_direct_computation_from_the_similarity_matrix():
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(30, 16, generator=g), dim=1)
    text_image = torch.randint(0, 30, (70,), generator=g)  # several captions per image
    text_image[:30] = torch.arange(30)  # every image has one
    texts = torch.nn.functional.normalize(images[text_image] + torch.randn(70, 16, generator=g),
                                          dim=1)
    scores = retrieval_scores(images, texts, text_image)
    similarity = (images @ texts.T).numpy()
    positives = np.zeros((30, 70), dtype=bool)
    positives[text_image.numpy(), np.arange(70)] = True
    for k in (1, 5, 10):
        assert scores[f"i2t_r{k}"] == (pytest.approx(_direct_recall(similarity, positives, k)), 30)
        assert scores[f"t2i_r{k}"] == (pytest.approx(_direct_recall(similarity.T, positives.T, k)),
                                       70)
    assert 0 < scores["i2t_r1"][0] < scores["i2t_r10"][0] < 1


def test_one_caption_per_image_is_cleanclips_rank_recall():
    """attack-cleanclip utils/retrieval.py:28-37: rank of the true pair in argsort order."""
    g = torch.Generator().manual_seed(1)
    images = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1)
    texts = torch.nn.functional.normalize(images + 0.8 * torch.randn(40, 8, generator=g), dim=1)
    similarity = (images @ texts.T).numpy()
    ranks = (np.argsort(similarity, axis=1)[:, ::-1] == np.arange(40)[:, None]).argmax(axis=1)
    scores = retrieval_scores(images, texts, torch.arange(40))
    for k in (1, 5, 10):
        assert scores[f"i2t_r{k}"][0] == pytest.approx(np.mean(ranks < k))


def test_triggered_retrieval_follows_the_original_majority_rule():
    """attack-cleanclip utils/retrieval.py:63-67: at least k // 2 (and one) target captions."""
    g = torch.Generator().manual_seed(2)
    triggered = torch.nn.functional.normalize(torch.randn(25, 8, generator=g), dim=1)
    texts = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    target = torch.rand(60, generator=g) < 0.3
    scores = triggered_retrieval(triggered, texts, target)
    order = np.argsort((triggered @ texts.T).numpy(), axis=1)[:, ::-1]
    for k in (1, 5, 10):
        named = target.numpy()[order[:, :k]].sum(axis=1)
        expected = np.mean((named >= k // 2) & (named > 0))
        assert scores[f"asr_r{k}"] == (pytest.approx(expected), 25)


def test_retrieval_set_groups_captions_of_one_image_file(micro, tmp_path):
    from PIL import Image

    rows, captions = ["image,caption"], []
    for i in range(6):
        Image.new("RGB", (40, 40), (40 * i, 255 - 40 * i, 90)).save(tmp_path / f"{i}.png")
        captions += [f"a photo number {i}", f"picture {i} of a bag" if i % 2 else f"shoe {i}"]
        rows += [f"{i}.png,{captions[-2]}", f"{i}.png,{captions[-1]}"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    model, tokenizer, normalize, size = micro
    cfg = {"source": {"format": "csv", "path": str(tmp_path / "pairs.csv"),
                      "image_key": "image", "caption_key": "caption"}}
    retrieval = RetrievalEvaluator(cfg, make_attack(ATTACK, 0), tokenizer, normalize, size,
                                   torch.device("cpu"), RunSettings())
    scores = retrieval.many([model])[0]
    assert scores["i2t_r1"][1] == 6 and scores["t2i_r1"][1] == 12
    assert scores["asr_r1"][1] == 3  # images 0, 2, 4: none of their captions names the bag
    model.eval()
    with torch.no_grad():
        clean = next(eval_batches(retrieval.data, None, normalize, 64, False))[0]
        images = model.encode_image(clean, normalize=True)
        texts = model.encode_text(tokenizer(captions), normalize=True)
    similarity = (images @ texts.T).numpy()
    positives = np.repeat(np.eye(6, dtype=bool), 2, axis=1)
    for k in (1, 5, 10):
        assert scores[f"i2t_r{k}"][0] == pytest.approx(_direct_recall(similarity, positives, k))
        assert scores[f"t2i_r{k}"][0] == pytest.approx(
            _direct_recall(similarity.T, positives.T, k))


def test_probe_schedule_is_cleanclips_cosine():
    """attack-cleanclip src/scheduler.py:3-14 with no warm-up, as src/evaluate.py:232 calls it."""
    from xspec.runtime.probe import cosine_lr

    def original(base_lr, num_warmup_steps, total_steps, current_step):
        if current_step < num_warmup_steps:
            return base_lr * (current_step + 1) / num_warmup_steps
        n = current_step - num_warmup_steps
        d = total_steps - num_warmup_steps
        return 0.5 * (1 + np.cos(np.pi * n / d)) * base_lr

    for step in (0, 1, 17, 99):
        assert cosine_lr(0.005, step, 100) == pytest.approx(original(0.005, 0, 100, step))


def test_probe_learns_separable_features():
    from xspec.runtime.probe import fit_probe

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 4
    y = torch.randint(0, 3, (300,), generator=g)
    x = centres[y] + torch.randn(300, 16, generator=g)
    cfg = {"epochs": 8, "batch_size": 32, "lr": 0.05, "weight_decay": 0.01}
    head = fit_probe(x[:200], y[:200], 3, cfg, seed=0)
    assert (head(x[200:]).argmax(1) == y[200:]).float().mean() > 0.9
    again = fit_probe(x[:200], y[:200], 3, cfg, seed=0)
    assert torch.equal(head.weight, again.weight)  # seeded: the same probe every time


def test_probe_is_logged_per_set_and_cached_per_model(micro, tmp_path, monkeypatch):
    import xspec.runtime.probe as probe

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train = {**FASHION, "split": "train", "size": 200}
    cfg = {"source": {**FASHION, "size": 64}, "sets": {"shoes": {
        "source": FASHION, "subset": SHOES_AND_BAG,
        "probe": {"train": train, "epochs": 4, "batch_size": 32, "lr": 0.005,
                  "weight_decay": 0.01}}}}
    scores = _evaluator(micro, cfg)(micro[0])
    rows = [r for r in scores.rows if r[0] == "probe:shoes"]
    assert [(r[1], r[3]) for r in rows] == [("top1", int(np.isin(
        open_eval(FASHION, 8).labels, SHOES_AND_BAG).sum()))]
    assert len(list((tmp_path / "xspec" / "probe").glob("*.json"))) == 1
    monkeypatch.setattr(probe, "fit_probe", lambda *a, **k: pytest.fail("not cached"))
    again = _evaluator(micro, cfg)(micro[0])
    assert [r for r in again.rows if r[0] == "probe:shoes"] == rows


def test_the_primary_set_named_clip80_scores_with_the_80_templates(micro):
    """The compiler writes the primary set's `templates = "clip80"` into its config: the
    classifier must use the 80 CLIP templates, not the characters of the name."""
    model = micro[0]
    named = _evaluator(micro, {"source": FASHION, "templates": "clip80"})
    assert len(named.templates) == 80
    assert [t("bag") for t in OPENAI_IMAGENET_TEMPLATES] == [t.format("bag") for t in
                                                             named.templates]
    assert named(model) == _evaluator(micro, {"source": FASHION})(model)
