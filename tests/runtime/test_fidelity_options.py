"""The runtime side of the fidelity options (docs/FIDELITY.md), each against the original's
behaviour: its schedule, EDA once per pair, fresh poisons of the cleaning set, the carried-over
optimizer and deep clustering's online labels and head."""

import numpy as np
import pytest
import torch

from xspec.compiler.configs import DeepClusterConfig
from xspec.errors import DataError
from xspec.runtime import models
from xspec.runtime.ablations import DeepCluster
from xspec.runtime.attacks import make_attack
from xspec.runtime.resume import continue_optimizer, model_optimizer_state
from xspec.runtime.optim import adamw, cleanclip_lr
from xspec.runtime.pipeline import TrainBatch
from xspec.runtime.stages.clean import fresh_poisons
from xspec.runtime.data import InMemoryImages
from xspec.runtime.train import scheduled_lr
from xspec.spec.tables.training import Training

CPU = torch.device("cpu")


def original_cosine_scheduler(lrs, base_lr, num_warmup_steps, total_steps):
    """attack-cleanclip src/scheduler.py, copied, writing into a list instead of an optimizer."""
    def _scheduler(current_step):
        if current_step < num_warmup_steps:
            lr = base_lr * (current_step + 1) / num_warmup_steps
        else:
            n = current_step - num_warmup_steps
            d = total_steps - num_warmup_steps
            lr = 0.5 * (1 + np.cos(np.pi * n / d)) * base_lr
        lrs.append(lr)
    return _scheduler


@pytest.mark.parametrize(("num_batches", "warmup"), [(7, 50), (30, 10)])
def test_cleanclip_schedule_is_the_originals_at_its_step_index(num_batches, warmup):
    epochs, base = 4, 1e-3
    expected: list[float] = []
    scheduler = original_cosine_scheduler(expected, base, warmup, num_batches * epochs)
    for epoch in range(1, epochs + 1):  # src/main.py:191, src/train.py:279
        for index in range(num_batches):
            scheduler(num_batches * epoch + index)
    cfg = Training(objective="mmcl", epochs=epochs, lr=base, warmup_steps=warmup, schedule="cleanclip")
    got = [scheduled_lr(cfg, step, epochs * num_batches) for step in range(epochs * num_batches)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] == pytest.approx(cleanclip_lr(0, base, warmup, epochs * num_batches,
                                                num_batches))
    paper = Training(objective="mmcl", epochs=epochs, lr=base, warmup_steps=warmup)
    assert scheduled_lr(paper, 0, epochs * num_batches) == base / warmup  # the warm-up the original skipped


class RecordingAugmenter:
    def __init__(self):
        self.text_seeds = []

    def __call__(self, images, captions, seeds, text_seeds=None):
        self.text_seeds.append((seeds if text_seeds is None else text_seeds).tolist())
        return images, captions


def text_seeds(once: bool) -> list[list[int]]:
    augmenter = RecordingAugmenter()
    recipe = TrainBatch(InMemoryImages(torch.zeros(4, 3, 8, 8, dtype=torch.uint8)),
                        ["a", "b", "c", "d"], np.zeros(4, dtype=bool), None,
                        lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), 0,
                        {"image", "text", "image_aug", "text_aug"}, augmenter, once)
    for epoch in (1, 2):
        recipe((epoch, [0, 1, 2, 3]))
    return augmenter.text_seeds


def test_eda_once_per_pair_keeps_each_captions_draw_across_epochs():
    once, per_epoch = text_seeds(True), text_seeds(False)
    assert once[0] == once[1] and len(set(once[0])) == 4
    assert per_epoch[0] != per_epoch[1]


def badnet(kind="badnet"):
    return make_attack({"kind": kind, "target": "bag", "poisons": 1,
                        "trigger": {"size": 2, "pattern": "cleanclip", "location": "corner"}}, 0)


def test_fresh_poisons_are_drawn_from_the_cleaning_set():
    indices = np.arange(100, 200, dtype=np.int64)
    captions = [f"caption {i}" for i in range(200)]
    chosen = fresh_poisons(indices, 5, badnet(), captions, seed=0)
    assert len(set(chosen.tolist())) == 5 and set(chosen.tolist()) <= set(indices.tolist())
    assert np.array_equal(chosen, fresh_poisons(indices, 5, badnet(), captions, seed=0))
    assert not np.array_equal(chosen, fresh_poisons(indices, 5, badnet(), captions, seed=1))
    with pytest.raises(DataError, match="clean.poisons = 101 but the cleaning set has only 100"):
        fresh_poisons(indices, 101, badnet(), captions, seed=0)


def test_fresh_label_consistent_poisons_need_captions_naming_the_target():
    indices = np.arange(10, dtype=np.int64)
    captions = [f"a bag {i}" if i % 3 == 0 else f"a shoe {i}" for i in range(10)]
    attack = badnet("label_consistent")
    chosen = fresh_poisons(indices, 2, attack, captions, seed=0)
    assert len(set(chosen.tolist())) == 2 and set(chosen.tolist()) <= {0, 3, 6, 9}
    assert fresh_poisons(indices, 4, attack, captions, seed=1).tolist() == [0, 3, 6, 9]
    with pytest.raises(DataError, match="clean.poisons = 5 but the cleaning set has only 4"):
        fresh_poisons(indices, 5, attack, captions, seed=0)


class Log(list):
    def __call__(self, line):
        self.append(line)


class Ctx:
    def __init__(self):
        self.log = Log()


def test_continued_optimizer_restores_the_pretraining_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    pretrain = adamw(model, 1e-3, 0.1)
    model(torch.rand(2, 3)).sum().backward()
    pretrain.step()
    cleaning, ctx = adamw(model, 1e-5, 20.0), Ctx()
    continue_optimizer(ctx, cleaning, model_optimizer_state(pretrain))
    assert cleaning.param_groups[0]["weight_decay"] == 0.1  # as PyTorch and the original do
    assert torch.equal(cleaning.state[model[0].weight]["exp_avg"],
                       pretrain.state[model[0].weight]["exp_avg"])
    assert ctx.log == ["optimizer continued from pre-training: weight decay 0.1 restored from "
                       "its checkpoint (clean.weight_decay = 20 has no effect)"]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return models.create("xspec-rn-tiny", "scratch", CPU)


class Pairs:
    indices = np.arange(4, dtype=np.int64)


def cluster(resnet, tmp_path, **cfg):
    labels = tmp_path / "labels.csv"
    labels.write_text("index,label\n0,0\n1,1\n2,2\n3,1\n")
    source = cfg.pop("labels", {"path": str(labels)})
    full = {"k": 3, "weight": 1.0, "labels": source, "iterations": 5, **cfg}
    return DeepCluster(DeepClusterConfig.model_validate(full), resnet, Pairs(), adamw(resnet, 1e-3, 0.1), CPU, seed=0)


def test_head_from_fixed_labels_is_initialised_once(resnet, tmp_path):
    once = cluster(resnet, tmp_path)
    once.on_epoch_start(1)
    head = once.head
    assert abs(head.weight.std().item() - 0.01) < 0.005 and not head.bias.any()
    once.on_epoch_start(2)
    assert once.head is head and len(once.optimizer.param_groups) == 3
    every = cluster(resnet, tmp_path, head_reset="every_epoch")
    every.on_epoch_start(1)
    first = every.head
    every.on_epoch_start(2)
    assert every.head is not first and len(every.optimizer.param_groups) == 3


def test_online_labels_are_the_nearest_centroid_of_the_current_embedding(resnet, tmp_path):
    online = cluster(resnet, tmp_path, labels="kmeans", assign="online")
    online.head = torch.nn.Linear(2, 2)
    online.centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    loss = online.loss(resnet, {"index": torch.tensor([0, 1, 2])}, {"image": image})
    expected = torch.nn.functional.cross_entropy(online.head(image), torch.tensor([0, 1, 0]))
    assert torch.equal(loss, expected)


def original_sig_blended(image):
    """attack-cleanclip backdoor/utils.py:65-70 and 84-86 (patch_type "SIG", location
    "blended"), copied, before the byte cast."""
    noise = torch.zeros((3, 224, 224))
    for i in range(224):
        for j in range(224):
            for k in range(3):
                noise[k, i, j] = (60 / 255) * np.sin(2 * np.pi * j * 6 / 224)
    image = (0.2 * noise) + (0.8 * image)
    return torch.clip(image, 0, 1)


def test_sig_blend_is_the_originals_sig():
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    sig = make_attack({"kind": "sig", "target": "bag", "poisons": 1, "amplitude": 60 / 255,
                       "frequency": 6.0, "blend": 0.2}, 0)
    out = sig.apply(image[None], torch.tensor([0]))[0]
    torch.testing.assert_close(out, original_sig_blended(image), rtol=0, atol=1e-6)
    added = make_attack({"kind": "sig", "target": "bag", "poisons": 1, "amplitude": 60 / 255,
                         "frequency": 6.0}, 0).apply(image[None], torch.tensor([0]))[0]
    assert (added - out).abs().max() > 0.1
