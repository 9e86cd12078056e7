"""RoCLIP and SafeCLIP as [pretrain] defences: their behaviour on constructed cases, a copy of
the originals' arithmetic, determinism, and their fields in the pretrain node's id."""

import types

import pytest
import torch
import torch.nn.functional as F

from xspec.builtin.roclip import CaptionPool, RoClip, roclip_loss
from xspec.builtin.roclip import build as build_roclip
from xspec.builtin.safeclip import SafeClip, mixed_loss, safe_ratio, split_safe
from xspec.compiler.plan import compile_spec
from xspec.errors import XspecError
from xspec.runtime.objectives import info_nce
from xspec.spec.load import load_spec
from xspec.spec.tables.training import Training


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_roclip_repairs_each_image_with_the_nearest_pool_caption():
    pool = CaptionPool(4, 3, seed=0, device="cpu")
    captions = _unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0])
    pool.push(captions)
    images = _unit([0.1, 0.9, 0.05], [0.9, 0.8, 0.0], [0.0, 0.1, 1.0])
    nearest = pool.nearest(images)
    assert torch.equal(nearest, captions[[1, 3, 2]])


def test_roclip_pool_is_a_fifo_started_from_the_seed():
    a, b = CaptionPool(5, 4, 1, "cpu"), CaptionPool(5, 4, 1, "cpu")
    assert torch.equal(a.bank, b.bank)
    assert not torch.equal(a.bank, CaptionPool(5, 4, 2, "cpu").bank)
    assert torch.allclose(a.bank.norm(dim=1), torch.ones(5))
    first, second = torch.full((3, 4), 1.0), torch.full((3, 4), 2.0)
    a.push(first)
    a.push(second)  # 3 + 3 > 5: fills to the end, drops the rest, starts over
    assert torch.equal(a.bank[:3], first) and torch.equal(a.bank[3:], second[:2])
    assert a.pointer == 0


def _lightly_bank_nn(bank, output):
    """model/src/memory_bank.py:41-55 (NNMemoryBankModule.forward) on a (size, dim) bank."""
    output_normed = F.normalize(output, dim=1)
    bank_normed = F.normalize(bank, dim=1)
    similarity_matrix = torch.einsum("nd,md->nm", output_normed, bank_normed)
    return torch.index_select(bank, dim=0, index=torch.argmax(similarity_matrix, dim=1))


def test_roclip_loss_equals_the_originals_arithmetic():
    g = torch.Generator().manual_seed(3)
    image = F.normalize(torch.randn(8, 6, generator=g), dim=-1)
    text = F.normalize(torch.randn(8, 6, generator=g), dim=-1)
    pool = CaptionPool(16, 6, seed=4, device="cpu")
    bank = pool.bank.clone()
    scale = torch.tensor(14.0)
    ours = roclip_loss(image, text, scale, pool)
    # model/src/train.py:33-49: lookup before the update, logits text_nn @ image^T, CE both ways
    text_nn = _lightly_bank_nn(bank, image)
    logits_image_per_text = scale * text_nn @ image.t()
    logits_text_per_image = logits_image_per_text.t()
    target = torch.arange(8)
    original = (F.cross_entropy(logits_text_per_image, target)
                + F.cross_entropy(logits_image_per_text, target)) / 2
    torch.testing.assert_close(ours, original)
    assert torch.equal(pool.bank[:8], text) and pool.pointer == 8  # pushed after the lookup


def test_roclip_uses_the_pool_only_every_k_epochs():
    setup = types.SimpleNamespace(seed=0, config=Training(objective="mmcl"), checkpoints=None,
                                  device="cpu")
    pieces = build_roclip(RoClip(pool_size=32, every=2, augment=False), setup)
    (term,) = pieces.terms
    assert term.name == "mmcl" and term.replaces
    g = torch.Generator().manual_seed(0)
    f = {"image": F.normalize(torch.randn(6, 4, generator=g), dim=-1),
         "text": F.normalize(torch.randn(6, 4, generator=g), dim=-1)}
    model = types.SimpleNamespace(logit_scale=torch.tensor(2.0))
    pieces.on_epoch_start(1)
    torch.testing.assert_close(term.fn(model, {}, f), info_nce(f["image"], f["text"],
                                                               torch.tensor(2.0).exp()))
    pieces.on_epoch_start(2)
    assert not torch.allclose(term.fn(model, {}, f), info_nce(f["image"], f["text"],
                                                              torch.tensor(2.0).exp()))


def test_safeclip_split_puts_low_similarity_pairs_in_the_risky_set():
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(100, 8, generator=g), dim=-1)
    text = F.normalize(image + 0.1 * torch.randn(100, 8, generator=g), dim=-1)
    mismatched = [3, 41, 77]  # poisoned-like: the caption belongs elsewhere
    text[mismatched] = -image[mismatched]
    safe = split_safe(F.cosine_similarity(image, text), 0.5)
    assert int(safe.sum()) == 50
    assert not safe[mismatched].any()
    assert split_safe(F.cosine_similarity(image, text), 0.97)[mismatched].sum() == 0


def test_safeclip_schedule_follows_the_original_defaults():
    spec = SafeClip()
    assert [safe_ratio(spec, e) for e in range(1, 7)] == [None] * 6  # 5 in-modal + 1 CLIP
    assert safe_ratio(spec, 7) == pytest.approx(0.15)
    assert safe_ratio(spec, 8) == pytest.approx(0.16)
    assert safe_ratio(spec, 200) == pytest.approx(0.85)


def test_safeclip_mixed_loss_is_clip_on_safe_and_ssl_on_risky():
    g = torch.Generator().manual_seed(1)
    f = {k: F.normalize(torch.randn(8, 4, generator=g), dim=-1)
         for k in ("image", "text", "image_aug", "text_aug")}
    scale = torch.tensor(5.0)
    everything = mixed_loss(f, scale, torch.ones(8, dtype=torch.bool))
    torch.testing.assert_close(everything, info_nce(f["image"], f["text"], scale))
    safe = torch.tensor([True] * 4 + [False] * 4)
    from xspec.runtime.objectives import ssl

    half = mixed_loss(f, scale, safe)
    risky = {k: v[4:] for k, v in f.items()}
    torch.testing.assert_close(half, 0.5 * info_nce(f["image"][:4], f["text"][:4], scale)
                               + 0.5 * ssl(risky, scale))


def test_pretrain_defences_enter_the_pretrain_id_with_their_version(write_spec, base_spec):
    plain = compile_spec(load_spec(write_spec(base_spec, "a.toml")))
    text = base_spec.replace("[pretrain]\n", "[pretrain]\nroclip = { every = 3 }\n", 1)
    defended = compile_spec(load_spec(write_spec(text, "b.toml")))
    pre = defended.of_kind("pretrain")[0]
    assert pre.identity["roclip"] == {"pool_size": 21845, "every": 3, "augment": True}
    assert pre.identity["plugins"]["defence:roclip"] == "1"
    assert plain.of_kind("poison")[0].id == defended.of_kind("poison")[0].id
    assert plain.of_kind("pretrain")[0].id != pre.id
    safe = base_spec.replace("[pretrain]\n", "[pretrain]\nsafeclip = { cap_ratio = 0.5 }\n", 1)
    node = compile_spec(load_spec(write_spec(safe, "c.toml"))).of_kind("pretrain")[0]
    assert node.config.safeclip.cap_ratio == 0.5


def test_bad_pretrain_defence_values_name_the_key(write_spec, base_spec):
    text = base_spec.replace(
        "[pretrain]\n", '[pretrain]\nsafeclip = { first_split = "ratio", cap_ratio = 0.1 }\n', 1)
    with pytest.raises(XspecError, match="pretrain.safeclip"):
        compile_spec(load_spec(write_spec(text)))
    text = base_spec.replace("[pretrain]\n", "[pretrain]\nroclip = { every = 0 }\n", 1)
    with pytest.raises(XspecError, match="pretrain.roclip.every"):
        compile_spec(load_spec(write_spec(text)))
