"""What a defence's behaviour returns to a training run: its loss terms and hooks (`Pieces`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Term:
    """A loss term beyond the objective's parts: weight * fn(model, batch, features)."""

    name: str
    weight: float
    fn: Callable
    replaces: bool = False
    """True: the term is the objective's loss part of the same name, computed the defence's
    way (RoCLIP's and SafeCLIP's "mmcl"); the objective's own computation of it is skipped."""


@dataclass
class Pieces:
    """What a defence adds to a cleaning run: loss terms, and a hook called at the start of each
    epoch (1-based) before its first step. Extra parameter groups (e.g. a fresh head) go through
    `setup.param_group(owner, params)`, so several defences can each own some.

    A defence that changes what cleaning trains on may also give `transform(batch) -> batch`
    (each training batch, on the device and normalised, before the forward pass: an
    augmentation), `loss(model, net, batch) -> (loss, parts, features)` (replaces the
    objective), and `batches`: an object with `batches(epoch, dist)` and `steps_per_epoch` that
    replaces the cleaning pairs (a labelled set). At most one defence of a run gives each."""

    terms: list[Term] = field(default_factory=list)
    on_epoch_start: Callable[[int], None] | None = None
    transform: Callable[[dict], dict] | None = None
    loss: Callable | None = None
    batches: Any = None
    on_epoch_end: Callable[[int], None] | None = None
    """After the epoch's last step (1-based), before the epoch is evaluated and saved."""
    before_step: Callable[[int], None] | None = None
    """Before each optimiser step's forward pass, with the step's number (0-based, global)."""
    after_step: Callable[[int], None] | None = None
    """After each optimiser step (`optimizer.step()`), with the number of steps taken."""


HOOKS = ("on_epoch_start", "on_epoch_end", "before_step", "after_step")
"""The `Pieces` fields called with a number; several defences' hooks of one name all run."""
