"""AdamW with CLIP's weight-decay exclusions, and warm-up + cosine as a pure function of the step."""

from __future__ import annotations

import math

import torch


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Decay only weights with ndim >= 2: never biases, norms or logit_scale."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = torch.cuda.is_available() and next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from step 0 (the first step already trains), then cosine to 0."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1 + math.cos(math.pi * progress)) * base_lr


def cleanclip_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                 steps_per_epoch: int) -> float:
    """The original schedule (attack-cleanclip src/scheduler.py) at the original's step index:
    src/train.py:279 calls it with num_batches * epoch + index, epochs counted from 1, so the
    first step is already `steps_per_epoch` in, past any shorter warm-up, and the last epoch
    runs beyond the cosine's end (the rate rises again slightly, as there)."""
    current = steps_per_epoch + step
    if current < warmup_steps:
        return base_lr * (current + 1) / warmup_steps
    n, d = current - warmup_steps, max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * n / d)) * base_lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
