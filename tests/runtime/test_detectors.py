"""Detectors of poisoned pairs: each ranks an obvious constructed outlier first, and the
k-NN detectors' numbers equal a copy of the original's arithmetic
(HanxunH/Detect-CLIP-Backdoor-Samples, backdoor_sample_detector/*.py)."""

import numpy as np
import pytest
import torch

from xspec.extend import DETECTORS
from xspec.extend.plugins import load_builtins
from xspec.extend.registry import resolve
from xspec.runtime.detect import DetectBatch, chunks, rank_metrics

load_builtins()
FEATURE_DETECTORS = ["k_distance", "lid", "slof", "dao", "isolation_forest", "clip_score"]


def _batch(image, text, seed=0, model=None, pixels=None):
    return DetectBatch(image, text, pixels, model, seed, torch.arange(len(image)))


def _score(name, batch, **settings):
    entry = DETECTORS.get(name)
    return torch.as_tensor(resolve(entry.behaviour)(entry.spec(**settings), batch))


def _clustered_with_outlier(n=200, dim=16, seed=0):
    """n pairs whose image and caption embeddings sit together in a tight cloud; pair 17's
    image is far away and its caption elsewhere again (a triggered image, a target caption)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, dim, generator=g) * 0.1 + 1.0
    text = image + torch.randn(n, dim, generator=g) * 0.05
    image[17] = -3.0 + torch.randn(dim, generator=g) * 0.1
    text[17] = 3.0 * torch.sign(torch.randn(dim, generator=g))
    return image, text


@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_each_detector_ranks_the_constructed_outlier_first(name):
    image, text = _clustered_with_outlier()
    scores = _score(name, _batch(image, text))
    assert scores.shape == (200,)
    assert int(torch.argmax(scores)) == 17, f"{name} ranked {int(torch.argmax(scores))} first"


@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_each_detector_is_deterministic_from_the_seed(name):
    image, text = _clustered_with_outlier(seed=3)
    first = _score(name, _batch(image, text, seed=5))
    assert torch.equal(first, _score(name, _batch(image, text, seed=5)))


# --- a copy of the original's arithmetic (one rank: misc.get_rank() == 0) -----------------

def _orig_pairwise(data, reference):  # k_distance.py:6-13
    b = data.shape[0]
    r = torch.cdist(data, reference, p=2, compute_mode="donot_use_mm_for_euclid_dist")
    mask = torch.zeros((b, reference.shape[0]), device=data.device, dtype=torch.bool)
    mask = torch.diagonal_scatter(mask, torch.ones(b), 0)
    return r[~mask].view(b, -1)


def _orig_sorted(v, t):  # k_distance.py:43-47
    d = torch.cat([_orig_pairwise(v, v), _orig_pairwise(v, t)], dim=1)
    return torch.sort(d, dim=1)


def _orig_k_distance(v, t, k):  # k_distance.py:47-48
    return _orig_sorted(v, t)[0][:, k]


def _orig_lid(v, t, k):  # lid_detection.py:48-50
    a, _ = _orig_sorted(v, t)
    return -k / torch.sum(torch.log(a[:, :k] / a[:, k].unsqueeze(-1) + 1.e-4), dim=1)


def _orig_full(v, t):  # slof.py:49-55
    ref = torch.cat([v, t], dim=0)
    return torch.sort(torch.cdist(ref, ref, compute_mode="donot_use_mm_for_euclid_dist"),
                      dim=1)[0]


def _orig_slof(v, t, k):  # slof.py:47-64
    a, idx = _orig_sorted(v, t)
    a_full_d = _orig_full(v, t)
    d_k = torch.stack([torch.index_select(a_full_d, dim=0, index=row)
                       for row in idx[:, :k]])[:, :, k]
    scores = (a[:, k].unsqueeze(-1) / d_k).mean(dim=1)
    return torch.nan_to_num(scores, nan=1000.0, posinf=1000.0, neginf=0.0)


def _orig_dao(v, t, k):  # dao.py:53-86
    a, idx = _orig_sorted(v, t)
    a_full_d = _orig_full(v, t)
    idx_k = idx[:, :k]
    full_lids = -k / torch.sum(torch.log(a_full_d[:, :k] / a_full_d[:, k].unsqueeze(-1)
                                         + 1.e-4), dim=1)
    d_k = torch.stack([torch.index_select(a_full_d, dim=0, index=row) for row in idx_k])[:, :, k]
    lid_k = torch.stack([torch.index_select(full_lids, dim=0, index=row) for row in idx_k])
    scores = (lid_k * torch.log(a[:, k].unsqueeze(-1) / d_k)).mean(dim=1)
    return torch.nan_to_num(scores, nan=1000.0, posinf=1000.0, neginf=0.0)


def _orig_clip_score(v, t):  # clip_scores.py:13-17, negated as process_detection_scores.py:178
    v, t = torch.nn.functional.normalize(v, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    return -(v @ t.T).diagonal()


@pytest.mark.parametrize("name,original,k", [
    ("k_distance", _orig_k_distance, 16), ("lid", _orig_lid, 64), ("slof", _orig_slof, 16),
    ("dao", _orig_dao, 16), ("k_distance", _orig_k_distance, 5), ("dao", _orig_dao, 7)])
def test_knn_detectors_equal_the_originals_arithmetic(name, original, k):
    g = torch.Generator().manual_seed(11)
    v, t = torch.randn(150, 32, generator=g), torch.randn(150, 32, generator=g)
    ours = _score(name, _batch(v, t), k=k)
    torch.testing.assert_close(ours, original(v, t, k), rtol=1e-5, atol=1e-6)


def test_clip_score_equals_the_originals_arithmetic():
    g = torch.Generator().manual_seed(2)
    v, t = torch.randn(40, 8, generator=g) * 3, torch.randn(40, 8, generator=g)
    torch.testing.assert_close(_score("clip_score", _batch(v, t)), _orig_clip_score(v, t))


def test_isolation_forest_is_the_negated_sklearn_score():
    from sklearn.ensemble import IsolationForest

    image, text = _clustered_with_outlier()
    forest = IsolationForest(n_estimators=100, random_state=9).fit(
        torch.cat([image, text]).numpy())
    expected = -forest.score_samples(image.numpy())
    np.testing.assert_allclose(_score("isolation_forest", _batch(image, text, seed=9)).numpy(),
                               expected)


class _Encoder(torch.nn.Module):
    """A linear image encoder over flattened pixels."""

    def __init__(self, pixels, dim=6):
        super().__init__()
        self.proj = torch.nn.Linear(pixels, dim, bias=False)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def encode_image(self, x):
        return self.proj(x.flatten(1))


def _orig_cd(model, images, fills, lr=0.1, gamma=0.001, beta=100.0, steps=100):
    """cognitive_distillation.py:29-52 with the random fills given (the original draws them
    from torch.rand at each step)."""
    b, c, h, w = images.shape
    mask_param = torch.nn.Parameter(torch.ones(b, 1, h, w))
    opt = torch.optim.Adam([mask_param], lr=lr, betas=(0.1, 0.1))
    vision = model.encode_image(images)
    for step in range(steps):
        opt.zero_grad()
        mask = (torch.tanh(mask_param) + 1) / 2
        x_adv = images * mask + (1 - mask) * fills[step]
        loss = torch.nn.L1Loss(reduction="none")(model.encode_image(x_adv),
                                                 vision.detach()).mean(dim=1)
        norm = torch.norm(mask, p=1, dim=[1, 2, 3]) * gamma
        tv_h = torch.pow(mask[:, :, 1:, :] - mask[:, :, :-1, :], 2).sum(dim=[1, 2, 3])
        tv_w = torch.pow(mask[:, :, :, 1:] - mask[:, :, :, :-1], 2).sum(dim=[1, 2, 3])
        tv = (tv_h + tv_w) / (mask.shape[1] * h * w)  # total_variation_loss(mask): c of the mask
        (loss + norm + beta * tv).mean().backward()
        opt.step()
    return torch.norm(((torch.tanh(mask_param) + 1) / 2).detach(), p=1, dim=[1, 2, 3])


def test_cognitive_distillation_equals_the_originals_arithmetic():
    from xspec.builtin.detectors.cognitive_distillation import CognitiveDistillation, mask_norms
    from xspec.runtime.seeding import generator

    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = _Encoder(3 * 6 * 6)
    for p in model.parameters():
        p.requires_grad_(False)
    g = generator(7, "cognitive-distillation")
    fills = [torch.rand(4, 3, 1, 1, generator=g) for _ in range(12)]
    ours = mask_norms(CognitiveDistillation(steps=12), model, images, seed=7)
    torch.testing.assert_close(ours, _orig_cd(model, images, fills, steps=12))


def test_rank_metrics_known_cases():
    poisoned = np.array([False] * 98 + [True] * 2)
    perfect = rank_metrics(np.arange(100.0), poisoned)
    assert perfect == {"auroc": 1.0, "auprc": 1.0, "tpr_at_1fpr": 1.0}
    flipped = rank_metrics(-np.arange(100.0), poisoned)
    assert flipped["auroc"] == 0.0 and flipped["tpr_at_1fpr"] == 0.0
    # one poison above every clean pair, one below all but one: TPR at 1 % FPR is one half.
    scores = np.arange(100.0)
    scores[98], scores[0] = 0.5, 200.0
    mixed = rank_metrics(scores, np.array([True] + [False] * 97 + [True, False]))
    assert mixed["tpr_at_1fpr"] == 0.5 and 0.4 < mixed["auroc"] < 0.6


def test_every_pair_is_scored_once_in_seeded_batches():
    parts = chunks(1000, 300, seed=4)
    assert sorted(i for part in parts for i in part) == list(range(1000))
    assert [len(p) for p in parts] == [300, 300, 400]  # the 100 left over join the last batch
    assert parts == chunks(1000, 300, seed=4) and parts != chunks(1000, 300, seed=5)
