"""BadCLIP: its loss equals the original's arithmetic, the patch goes where the original puts
it, the optimisation is a node upstream of poisoning, and on a constructed clean CLIP the
optimisation lowers its loss."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from xspec.builtin.badclip import BadClip, BadClipTriggerConfig
from xspec.runtime.badclip import (
    BadClipAttack, badclip_loss, corners, initial_patch,
)

FASHION = {"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
           "split": "train", "size": 1024}


def test_loss_is_the_originals_infonce_plus_weighted_triplet():
    """src/embeding_optimize_patch.py:108-126 (nature) and :144-165 (pos_neg triplet)."""
    torch.manual_seed(0)
    a, t, c, p = (F.normalize(torch.randn(8, 16), dim=-1) for _ in range(4))
    scale = torch.tensor(20.0)
    logits = scale * a @ t.t()
    target = torch.arange(8)
    nature = (nn.CrossEntropyLoss()(logits, target) + nn.CrossEntropyLoss()(logits.t(), target)) / 2
    triplet = nn.TripletMarginLoss(margin=0.5)(a, p, c) * 500
    total, parts = badclip_loss(a, t, c, p, scale, 1.0, 500.0, 0.5)
    assert torch.allclose(total, nature + triplet, atol=1e-5)
    assert set(parts) == {"text", "triplet"}
    only_text, parts = badclip_loss(a, t, c, p, scale, 1.0, 0.0, 0.5)
    assert torch.allclose(only_text, nature) and set(parts) == {"text"}


def test_middle_patch_sits_where_the_original_embeds_it():
    """embed_patch (:188-195): c = int(H / 2), start = int(c - l / 2)."""
    rows, cols = corners([3, 4], "middle", 16, 224, 224, 0)
    assert rows.tolist() == cols.tolist() == [104, 104]
    rows, cols = corners([3, 4], "middle", 5, 32, 32, 0)
    assert rows.tolist() == [13, 13]
    a, b = corners([7, 8], "random", 4, 32, 32, 0), corners([7, 8], "random", 4, 32, 32, 0)
    assert torch.equal(a[0], b[0]) and all(0 <= r <= 28 for r in a[0].tolist())


def test_attack_pastes_the_stored_patch_exactly():
    stored = (initial_patch(4, 0) * 255).round().to(torch.uint8)
    spec = BadClip(kind="badclip", target="bag", poisons=1, surrogate="clip.pt", size=4)
    attack = BadClipAttack(spec, 0, patch=stored)
    images = torch.rand(2, 3, 32, 32)
    out = attack.apply(images, torch.tensor([0, 1]))
    assert torch.equal(out[:, :, 14:18, 14:18], (stored.float() / 255).expand(2, -1, -1, -1))
    untouched = torch.ones(32, 32, dtype=torch.bool)
    untouched[14:18, 14:18] = False
    assert torch.equal(out[:, :, untouched], images[:, :, untouched])
    assert initial_patch(4, 0).min() >= 0 and initial_patch(4, 0).max() <= 1


SPEC = """
[study]
name = "bc"
[data]
train = {{ format = "fashion_mnist", size = 256 }}
eval = {{ format = "fashion_mnist", split = "test", size = 64 }}
[attack]
kind = "badclip"
target = "bag"
poisons = 8
surrogate = {surrogate}
size = {size}
[model]
arch = "xspec-vit-micro"
[pretrain]
objective = "mmcl"
epochs = 1
"""


def _plan(tmp_path, surrogate='"clip.pt"', size=8):
    from xspec.compiler.plan import compile_spec
    from xspec.spec.load import load_spec

    (tmp_path / "clip.pt").write_bytes(b"weights")
    path = tmp_path / "s.toml"
    path.write_text(SPEC.format(surrogate=surrogate, size=size))
    return compile_spec(load_spec(path))


def test_the_optimisation_is_a_node_upstream_of_poisoning(tmp_path):
    plan = _plan(tmp_path)
    trigger = plan.of_kind("badclip_trigger")[0]
    poison = plan.of_kind("poison")[0]
    assert poison.deps == (trigger.id,)
    assert poison.identity["trigger_node"] == trigger.id
    assert trigger.identity["surrogate"]["path"] == str(tmp_path / "clip.pt")
    assert trigger.identity["arch"] == "xspec-vit-micro" and trigger.identity["size"] == 8
    other = _plan(tmp_path, size=6)
    assert other.of_kind("badclip_trigger")[0].id != trigger.id
    assert other.of_kind("poison")[0].id != poison.id


class StubClip(nn.Module):
    """A constructed clean CLIP: images embed by a fixed random projection of their pixels, and
    each class's text embedding is the mean embedding of its training images."""

    def __init__(self, pairs, labels, classes: int, side: int):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.randn(3 * side * side, 32, generator=gen) / (3 * side * side) ** 0.5
        _, images = pairs.images.load(list(range(len(labels))))
        features = F.normalize(self.encode_image(images.float() / 255), dim=-1)
        self.text = torch.stack([F.normalize(features[labels == c].mean(0), dim=0)
                                 for c in range(classes)])
        self.logit_scale = nn.Parameter(torch.tensor(2.3))

    def encode_image(self, x):
        return x.flatten(1) @ self.proj

    def encode_text(self, ids):
        return self.text[ids]


def test_optimisation_lowers_its_loss():
    from xspec.runtime.attacks.patch import target_pattern
    from xspec.runtime.badclip import Optimisation, optimise_patch
    from xspec.runtime.data import open_eval, open_pairs
    from xspec.spec.classes import read_classes
    from xspec.runtime.pipeline import Normalizer

    side, classes = 16, read_classes("fashion_mnist")
    pairs = open_pairs(FASHION, side)
    labels = torch.as_tensor(open_eval(FASHION, side).labels)
    model = StubClip(pairs, labels, len(classes), side)
    patterns = [target_pattern(c) for c in classes]

    def tokenizer(captions):
        return torch.tensor([next((i for i, p in enumerate(patterns) if p.search(c)), 0)
                             for c in captions])

    cfg = BadClipTriggerConfig(
        surrogate={"path": "stub"}, arch=None, train=FASHION, target="bag", size=6,
        location="middle", epochs=4, batch_size=16, lr=0.05, images=64, text_weight=1.0,
        image_weight=10.0, margin=1.0, seed=0)
    identity = Normalizer.of((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    stored, losses = optimise_patch(Optimisation(cfg, model, identity, tokenizer, pairs,
                                                 torch.device("cpu")))
    assert losses[4] < losses[0] - 0.5, losses
    assert stored.dtype == torch.uint8 and stored.shape == (3, 6, 6)
    assert not torch.equal(stored, (initial_patch(6, 0) * 255).round().to(torch.uint8))
