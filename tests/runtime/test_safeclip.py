"""SafeCLIP as its authors' code runs it (BigML-CS-UCLA/SafeCLIP): the GMM first split, the
growing share, the two loaders, the in-modal and cross-modal losses and the per-phase learning
rates, each compared with a copy of the original's arithmetic on constructed data."""

import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xspec.builtin.roclip import CaptionPool
from xspec.builtin.safeclip import (
    PhasedBatches, SafeClip, choose_safe, cross_loss, inmodal_loss, phase_lr,
)
from xspec.errors import XspecError


def original_gmm_split(sims: np.ndarray, first_ratio=None, filter_ratio=None):
    """main.py:193-213 with samplers.fit_gmm_to_cos_sim, on one process."""
    from sklearn.mixture import GaussianMixture

    similarities = torch.tensor(sims)
    sample_indices = torch.arange(len(sims))
    new_indices = sample_indices[torch.argsort(similarities, descending=True)]
    new_sim_np = similarities[torch.argsort(similarities, descending=True)]
    cos = new_sim_np.numpy().reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, random_state=0).fit(cos)
    clean = gmm.predict_proba(cos)[:, np.argmax(gmm.means_)]
    gmm_indices = new_indices[torch.argsort(torch.tensor(clean), descending=True)]
    if filter_ratio is None:
        weights = torch.tensor([0 if i < 0.9 else i for i in clean])
        return set(new_indices[weights > 0].tolist()), float((weights > 0).sum() / len(sims))
    return set(gmm_indices[:int(len(sims) * filter_ratio)].tolist()), filter_ratio


def _sims(seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    sims = np.concatenate([rng.normal(0.6, spread, 900), rng.normal(0.1, spread, 100)])
    return rng.permutation(sims)


def test_first_split_is_the_gmm_confident_pairs_and_leaves_mismatched_pairs_risky():
    sims = _sims()
    spec = SafeClip(inmodal_warmup=1, multimodal_warmup=1)
    safe, first = choose_safe(spec, sims, 3, None)
    expected, ratio = original_gmm_split(sims)
    assert set(np.flatnonzero(safe.numpy()).tolist()) == expected
    assert first == pytest.approx(ratio)
    assert not safe.numpy()[sims < 0.3].any()  # the low-similarity (poison-like) pairs


def test_later_splits_grow_the_share_in_the_mixture_order():
    sims = _sims(1, spread=0.2)  # overlapping: distinct probabilities, no ties to order
    spec = SafeClip(inmodal_warmup=1, multimodal_warmup=1, ratio_step=0.05, cap_ratio=0.85)
    _, first = choose_safe(spec, sims, 3, None)
    for epoch, ratio in ((4, first + 0.05), (5, first + 0.10), (40, 0.85)):
        safe, kept = choose_safe(spec, sims, epoch, first)
        expected, _ = original_gmm_split(sims, first, min(ratio, 0.85))
        assert kept == first and set(np.flatnonzero(safe.numpy()).tolist()) == expected


def original_schedule(epochs, warm_in, warm_multi, n_batches, first, step, in_lr, cross_lr,
                      filter_lr, warmup, risky_batches, safe_batches):
    """The rates the code sets at every step: main.py:109, 167-229, train.py:86-105,
    scheduler.py:21-45 (loader_update_freq 1)."""
    def cosine(base, total):
        def at(current, lr_adjust=False):
            if lr_adjust:
                return filter_lr
            if current < warmup:
                return base * (current + 1) / warmup
            return 0.5 * (1 + np.cos(np.pi * (current - warmup) / (total - warmup))) * base
        return at

    pre = cosine(in_lr, n_batches * (warm_in + warm_multi))
    update = epochs - warm_in - warm_multi
    total = sum((i * step + first) * n_batches for i in range(update))
    train_num_batches = total // update
    inmodal, cross = cosine(in_lr, total), cosine(cross_lr, total)
    rates = []
    for epoch in range(1, epochs + 1):
        if epoch <= warm_in:
            rates += [("inmodal", pre(n_batches * epoch + i)) for i in range(n_batches)]
        elif epoch <= warm_in + warm_multi:
            rates += [("cross", pre(n_batches * epoch + i, True)) for i in range(n_batches)]
        else:
            rates += [("inmodal", inmodal(risky_batches * epoch + i))
                      for i in range(risky_batches)]
            rates += [("cross", cross(train_num_batches * epoch + i))
                      for i in range(safe_batches)]
    return rates


def test_phase_rates_equal_the_originals_schedules():
    spec = SafeClip(inmodal_warmup=2, multimodal_warmup=1, ratio_step=0.02, filter_lr=5e-6)
    epochs, n, first, lr, warmup = 8, 10, 0.3, 5e-4, 12
    expected = original_schedule(epochs, 2, 1, n, first, 0.02, lr, lr, 5e-6, warmup, 6, 4)
    got = []
    for epoch in range(1, epochs + 1):
        phases = ([("inmodal", n)] if epoch <= 2 else [("cross", n)] if epoch == 3
                  else [("inmodal", 6), ("cross", 4)])
        for phase, batches in phases:
            got += [(phase, phase_lr(spec, lr, warmup, epochs, epoch, phase, i, batches, n,
                                     first if epoch > 3 else None)) for i in range(batches)]
    assert [p for p, _ in got] == [p for p, _ in expected]
    np.testing.assert_allclose([r for _, r in got], [r for _, r in expected], rtol=1e-12)


def _features(seed, n=8, d=4):
    g = torch.Generator().manual_seed(seed)
    return {k: F.normalize(torch.randn(n, d, generator=g), dim=-1)
            for k in ("image", "text", "image_aug", "text_aug")}


def test_inmodal_loss_equals_the_originals_arithmetic_with_and_without_the_bank():
    f, scale = _features(0), torch.tensor(4.0)
    target = torch.arange(8)
    expected = (F.cross_entropy(scale * f["image_aug"] @ f["image"].t(), target)
                + F.cross_entropy(scale * f["text_aug"] @ f["text"].t(), target)) / 2
    torch.testing.assert_close(inmodal_loss(f, scale), expected)
    banks = [CaptionPool(16, 4, seed, "cpu") for seed in (0, 1)]
    before = [b.bank.clone() for b in banks]
    nn_image = before[0][(F.normalize(f["image"], dim=1) @ F.normalize(before[0], dim=1).t())
                         .argmax(1)]
    nn_text = before[1][(F.normalize(f["text"], dim=1) @ F.normalize(before[1], dim=1).t())
                        .argmax(1)]
    expected = (F.cross_entropy(scale * f["image_aug"] @ nn_image.t(), target)
                + F.cross_entropy(scale * f["text_aug"] @ nn_text.t(), target)) / 2
    torch.testing.assert_close(inmodal_loss(f, scale, banks), expected)
    torch.testing.assert_close(banks[0].bank[:8], f["image"])  # pushed after the lookup


def test_cross_loss_pairs_each_view_with_the_other_modalitys_augmentation():
    f, scale, target = _features(1), torch.tensor(3.0), torch.arange(8)
    expected = (F.cross_entropy(scale * f["image"] @ f["text_aug"].t(), target)
                + F.cross_entropy(scale * f["text"] @ f["image_aug"].t(), target)) / 2
    torch.testing.assert_close(cross_loss(f, scale, True), expected)
    plain = scale * f["image"] @ f["text"].t()
    torch.testing.assert_close(cross_loss(f, scale, False),
                               (F.cross_entropy(plain, target)
                                + F.cross_entropy(plain.t(), target)) / 2)


class _Data:
    """TrainingData's surface that PhasedBatches reads."""

    def __init__(self, n=40, batch_size=8):
        self.indices, self.batch_size, self.seed = np.arange(n), batch_size, 0
        self.device, self.skipped, self.steps_per_epoch = torch.device("cpu"), set(), n // 8
        self.normalize = None
        self.loader = types.SimpleNamespace(run=lambda jobs: (
            (job, {"index": torch.tensor(job[1])}) for job in jobs))

    def batches(self, epoch, dist):
        yield {"index": torch.tensor(self.indices[:8])}


def test_two_loaders_train_risky_pairs_in_modal_then_safe_pairs_cross_modal():
    data, state = _Data(), {"safe": None}
    spec = SafeClip(inmodal_warmup=1, multimodal_warmup=1)
    safe = torch.zeros(40, dtype=torch.bool)
    safe[:16] = True
    state["safe"] = safe
    dist = types.SimpleNamespace(world=1, rank=0, shard=lambda items: items)
    seen = [(state["phase"], state["index"], batch["index"].tolist())
            for batch in PhasedBatches(spec, data, state).batches(3, dist)]
    phases = [p for p, _, _ in seen]
    assert phases == ["inmodal"] * 3 + ["cross"] * 2  # 24 risky, 16 safe pairs; batch 8
    risky = [i for p, _, b in seen if p == "inmodal" for i in b]
    assert sorted(risky) == list(range(16, 40))
    assert sorted(i for p, _, b in seen if p == "cross" for i in b) == list(range(16))
    assert [i for _, i, _ in seen] == [0, 1, 2, 0, 1]


def test_the_memory_bank_on_several_ranks_is_refused_with_the_key():
    spec = SafeClip(memory_bank=256)
    dist = types.SimpleNamespace(world=2, rank=0, shard=lambda items: items)
    with pytest.raises(XspecError, match="pretrain.safeclip.memory_bank"):
        next(PhasedBatches(spec, _Data(), {"safe": None}).batches(1, dist))
