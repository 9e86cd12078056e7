"""Losses and schedules against their references."""

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from xspec.runtime.objectives import mmcl, ssl, total_loss
from xspec.runtime.optim import adamw, lr_at


def _features(n=16, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: F.normalize(torch.randn(n, d, generator=g), dim=-1)
            for k in ("image", "text", "image_aug", "text_aug")}


def test_mmcl_equals_open_clip_clip_loss():
    f, scale = _features(), torch.tensor(14.3)
    assert torch.allclose(mmcl(f, scale), ClipLoss()(f["image"], f["text"], scale), atol=1e-5)


def test_ssl_is_mean_of_image_and_text_inmodal_nce():
    f, scale = _features(), torch.tensor(10.0)
    labels = torch.arange(16)
    expected = (F.cross_entropy(scale * f["image"] @ f["image_aug"].t(), labels)
                + F.cross_entropy(scale * f["text"] @ f["text_aug"].t(), labels)) / 2
    assert torch.allclose(ssl(f, scale), expected, atol=1e-6)


def test_total_loss_weights_the_parts():
    f, scale = _features(), torch.tensor(10.0)
    total, parts = total_loss("mmcl+ssl", {"mmcl": 1.0, "ssl": 4.0}, f, scale)
    assert set(parts) == {"mmcl", "ssl"}
    assert torch.allclose(total, parts["mmcl"] + 4 * parts["ssl"])


def test_lr_warms_up_from_step_zero_then_cosine_to_zero():
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert lr_at(100, 1.0, 10, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(0, 1.0, 0, 100) == pytest.approx(1.0)


def test_adamw_decays_only_matrices():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    model.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    decay, no_decay = adamw(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.ndim for p in decay["params"]] == [2]
    assert len(no_decay["params"]) == 4
