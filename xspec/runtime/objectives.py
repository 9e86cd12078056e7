"""Losses as pure functions of L2-normalised features; objectives are weighted sums of parts.

An objective name such as "mmcl+ssl" lists parts of `LOSSES`; the spec gives each its weight.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Features = dict[str, Tensor]
LOSSES: dict[str, Callable[[Features, Tensor], Tensor]] = {}
# Which feature views each part needs; the training batch builds only what is asked for.
VIEWS: dict[str, tuple[str, ...]] = {}


def register_loss(name: str, views: tuple[str, ...]):
    def decorate(fn):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name], VIEWS[name] = fn, views
        return fn

    return decorate


def info_nce(a: Tensor, b: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE between row-aligned batches a and b (CLIP's loss)."""
    logits = logit_scale * a @ b.t()
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def one_way_nce(a: Tensor, b: Tensor, logit_scale: Tensor) -> Tensor:
    logits = logit_scale * a @ b.t()
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


@register_loss("mmcl", views=("image", "text"))
def mmcl(f: Features, logit_scale: Tensor) -> Tensor:
    """Multimodal contrastive loss, eq. (1) of the paper; equals open_clip's ClipLoss."""
    return info_nce(f["image"], f["text"], logit_scale)


@register_loss("ssl", views=("image", "text", "image_aug", "text_aug"))
def ssl(f: Features, logit_scale: Tensor) -> Tensor:
    """In-modal self-supervision, eq. (2): each image against its augmentation, each caption too."""
    return (one_way_nce(f["image"], f["image_aug"], logit_scale)
            + one_way_nce(f["text"], f["text_aug"], logit_scale)) / 2


def parts(objective: str) -> list[str]:
    names = objective.split("+")
    unknown = [n for n in names if n not in LOSSES]
    if unknown:
        raise ValueError(f"unknown loss part(s) {unknown}; registered: {sorted(LOSSES)}")
    return names


def needed_views(objective: str) -> set[str]:
    return {v for name in parts(objective) for v in VIEWS[name]}


def total_loss(objective: str, weights: dict[str, float], features: Features,
               logit_scale: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    values = {name: LOSSES[name](features, logit_scale) for name in parts(objective)}
    total = sum(weights.get(name, 1.0) * value for name, value in values.items())
    return total, values
