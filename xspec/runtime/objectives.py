"""Losses as pure functions of L2-normalised features; objectives are weighted sums of parts.

An objective name such as "mmcl+ssl" lists registered loss parts (`xspec.extend.LOSS_PARTS`:
mmcl and ssl here, by name from `xspec.spec.schema`; a plugin registers more); the spec gives
each its weight (parts without a `<part>_weight` field weigh 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from xspec.extend.plugins import load_builtins
from xspec.extend.registry import LOSS_PARTS, resolve

Features = dict[str, Tensor]


def info_nce(a: Tensor, b: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE between row-aligned batches a and b (CLIP's loss)."""
    logits = logit_scale * a @ b.t()
    labels = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def one_way_nce(a: Tensor, b: Tensor, logit_scale: Tensor) -> Tensor:
    logits = logit_scale * a @ b.t()
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def mmcl(f: Features, logit_scale: Tensor) -> Tensor:
    """Multimodal contrastive loss, eq. (1) of the paper; equals open_clip's ClipLoss."""
    return info_nce(f["image"], f["text"], logit_scale)


def ssl(f: Features, logit_scale: Tensor) -> Tensor:
    """In-modal self-supervision, eq. (2): each image against its augmentation, each caption too."""
    return (one_way_nce(f["image"], f["image_aug"], logit_scale)
            + one_way_nce(f["text"], f["text_aug"], logit_scale)) / 2


# name -> function, resolved from the registry on first use.
LOSSES: dict[str, Callable[[Features, Tensor], Tensor]] = {"mmcl": mmcl, "ssl": ssl}


def parts(objective: str) -> list[str]:
    load_builtins()
    names = objective.split("+")
    unknown = [n for n in names if n not in LOSS_PARTS]
    if unknown:
        raise ValueError(f"unknown loss part(s) {unknown}; registered: {LOSS_PARTS.names()}")
    for name in names:
        if name not in LOSSES:
            LOSSES[name] = resolve(LOSS_PARTS.get(name).behaviour)
    return names


def needed_views(objective: str) -> set[str]:
    """Which feature views the parts read; the training batch builds only what is asked for."""
    return {v for name in parts(objective) for v in LOSS_PARTS.get(name).views}


def total_loss(objective: str, weights: dict[str, float], features: Features,
               logit_scale: Tensor, skip: frozenset[str] = frozenset()
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of the objective's parts, less those in `skip` (a defence computes
    them its own way: `Term(replaces=True)`)."""
    values = {name: LOSSES[name](features, logit_scale) for name in parts(objective)
              if name not in skip}
    total = sum((weights.get(name, 1.0) * value for name, value in values.items()),
                features["image"].new_zeros(()))
    return total, values
