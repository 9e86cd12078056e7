"""One optimiser step, top to bottom (`train_step`); the epoch loop around it is
`xspec.runtime.loop`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from xspec.errors import XspecError
from xspec.extend.registry import Term as ExtraTerm  # a defence's loss term
from xspec.runtime.distributed import Dist, gather
from xspec.runtime.objectives import total_loss
from xspec.runtime.optim import cleanclip_lr, lr_at, set_lr
from xspec.spec.tables.training import Training
from xspec.runtime.precision import Precision

MAX_LOGIT_SCALE = math.log(100)


class NonFiniteLoss(XspecError):
    pass


def check_finite(model, epoch: int, step: int) -> None:
    """Raise when a parameter holds NaN or inf: the loss of the last step was finite, but the
    update it made can still overflow, and a NaN model scores chance accuracy with ASR 0."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteLoss(f"parameters became non-finite at epoch {epoch}, step {step} "
                            f"({len(bad)} tensor(s), e.g. {bad[0]}); the run diverged: "
                            "lower the learning rate")


def scheduled_lr(cfg: Training, step: int, total_steps: int) -> float:
    """The learning rate of `step` under the run's schedule (`schedule`, docs/FIDELITY.md)."""
    if cfg.schedule == "cleanclip":
        return cleanclip_lr(step, cfg.lr, cfg.warmup_steps, total_steps,
                            total_steps // cfg.epochs)
    return lr_at(step, cfg.lr, cfg.warmup_steps, total_steps)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    # The last epoch's loader figures: pairs/s (all ranks) and the share of the epoch's wall
    # time spent waiting for the next batch (a starved device shows as a share near 1).
    perf: dict[str, float] = field(default_factory=dict)
    precision: Precision | None = None  # made at the first step (it holds a GradScaler's state)


def encode(net, batch: dict[str, torch.Tensor], device: torch.device,
           dist: Dist = Dist()) -> dict[str, torch.Tensor]:
    """All views in one forward call (image views stacked, text views stacked), through the
    module's forward so DDP sees it; with several ranks, gathered into the global batch."""
    stacks = {}
    for modality in ("image", "text"):
        names = [k for k in (modality, f"{modality}_aug") if k in batch]
        stacks[modality] = (names, torch.cat([batch[k] for k in names]).to(device,
                                                                           non_blocking=True))
    out = net(stacks["image"][1], stacks["text"][1])
    encoded = {"image": out[0], "text": out[1]} if isinstance(out, tuple) else {
        "image": out["image_features"], "text": out["text_features"]}
    features = {}
    for modality, (names, _) in stacks.items():
        chunks = encoded[modality].split([len(batch[k]) for k in names])
        for name, chunk in zip(names, chunks):
            features[name] = gather(F.normalize(chunk, dim=-1), dist)
    return features


def autocast_for(device: torch.device):
    return Precision("bf16", device.type).forward()


def train_step(cfg: Training, model, net, optimizer, batch: dict, state: TrainState,
               total_steps: int, device: torch.device, extra_terms: Sequence[ExtraTerm] = (),
               dist: Dist = Dist(), hooks=None) -> dict[str, torch.Tensor]:
    """One optimiser step on one batch; returns the loss and its parts (detached). `hooks`
    (a defence's `transform` and `loss`, see `xspec.extend.pieces.Pieces`) may change the
    batch before the forward pass and replace the objective; its `before_step(step)` runs
    before the forward pass, `after_step(steps taken)` after the optimiser step."""
    set_lr(optimizer, scheduled_lr(cfg, state.step, total_steps))
    before, after = (getattr(hooks, "before_step", None), getattr(hooks, "after_step", None))
    if before is not None:
        before(state.step)
    transform, replaced = (hooks.transform, hooks.loss) if hooks is not None else (None, None)
    if transform is not None:
        batch = transform(batch)
    if state.precision is None:
        state.precision = Precision(cfg.precision, device.type)
    precision = state.precision
    if replaced is not None:  # a defence's own objective: forward and loss in one call
        with precision.forward():
            loss, parts, features = replaced(model, net, batch)
    else:
        with precision.forward():
            features = encode(net, batch, device, dist)
    with precision.loss():
        if replaced is None:
            loss, parts = total_loss(cfg.objective, cfg.weights, features,
                                     model.logit_scale.exp(),
                                     frozenset(t.name for t in extra_terms if t.replaces))
        for term in extra_terms:
            parts[term.name] = term.fn(model, batch, features)
            loss = loss + term.weight * parts[term.name]
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"loss is {loss.item()} at epoch {state.epoch + 1}, step {state.step}")
    optimizer.zero_grad(set_to_none=True)
    precision.step(loss, optimizer)
    with torch.no_grad():
        model.logit_scale.clamp_(0, cfg.logit_scale_max)
    state.step += 1
    if after is not None:
        after(state.step)
    return {name: value.detach() for name, value in {"loss": loss, **parts}.items()}


def timed(batches: Iterator[dict]) -> Iterator[tuple[dict, float]]:
    """Each batch with the seconds spent waiting for it."""
    loader = iter(batches)
    while True:
        asked = time.perf_counter()
        batch = next(loader, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - asked
