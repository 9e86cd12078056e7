"""The one epoch loop: a list of members trained on the same batches, one epoch at a time.

A node run alone is a list of one (`xspec.runtime.fit`); a packed job (`[run] pack = K`,
`xspec.runtime.packed`) is a list of K siblings that share their data, so each batch is
decoded, poisoned and augmented once and every member steps on it. What a member records at an
epoch's end (evaluation, metrics, checkpoints) is the caller's `on_epoch_end`.

A member whose step raises (a NaN loss) fails alone: its error is kept (`Trainee.error`,
`Trainee.on_fail`) and the others go on. Members resumed at different epochs each start at their
own: epoch e trains the members that have finished e - 1.

`step_each` steps the members one after the other; it is the seam where a fused step (one
vmapped pass over the stacked members, `xspec.runtime.fused`) would step them all at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from xspec.runtime.distributed import Dist, wrap
from xspec.runtime.train import TrainState, check_finite, timed, train_step
from xspec.spec.tables.training import Training


@dataclass(eq=False)
class Trainee:
    """One member of the loop: what a step needs and the sums of the epoch it is in."""

    cfg: Training  # the node's typed config (PretrainConfig, CleanConfig): what a step reads
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState = field(default_factory=TrainState)
    hooks: object = None  # the member's defences (xspec.extend.pieces.Pieces)
    progress: Callable[[TrainState], None] | None = None
    on_fail: Callable[[Exception], None] | None = None  # called inside the `except`
    net: torch.nn.Module | None = None  # what the forward pass calls: the model or its wrapper
    sums: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    error: Exception | None = None

    @property
    def terms(self) -> Sequence:
        return self.hooks.terms if self.hooks is not None else ()

    def losses(self) -> dict[str, float]:
        """The mean of each loss part over the epoch's steps."""
        return {name: total / max(1, self.batches) for name, total in self.sums.items()}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        self.batches += 1
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def fail(self, exc: Exception) -> None:
        self.error = exc
        if self.on_fail is not None:
            self.on_fail(exc)


def guard(trainees: Sequence[Trainee], action: Callable[[Trainee], None]) -> list[Trainee]:
    """Run action(t) for each trainee; one whose action raises fails alone. The survivors."""
    alive = []
    for trainee in trainees:
        try:
            action(trainee)
        except Exception as exc:  # noqa: BLE001 - the member's failure, recorded as such
            trainee.fail(exc)
        else:
            alive.append(trainee)
    return alive


Step = Callable[[list[Trainee], dict, int, torch.device, Dist], list[Trainee]]


def step_each(trainees: list[Trainee], batch: dict, steps_per_epoch: int,
              device: torch.device, dist: Dist) -> list[Trainee]:
    """Every trainee's optimiser step on `batch`, one after the other; the survivors."""

    def step(trainee: Trainee) -> None:
        losses = train_step(trainee.cfg, trainee.model, trainee.net or trainee.model,
                            trainee.optimizer, batch, trainee.state,
                            trainee.cfg.epochs * steps_per_epoch, device, trainee.terms, dist,
                            trainee.hooks)
        trainee.add(losses)
        if trainee.progress is not None:
            trainee.progress(trainee.state)

    return guard(trainees, step)


def _begin_epoch(trainee: Trainee, epoch: int) -> None:
    if getattr(trainee.hooks, "on_epoch_start", None) is not None:
        trainee.hooks.on_epoch_start(epoch)
    trainee.model.train()
    trainee.sums, trainee.batches = {}, 0


def _end_epoch(trainee: Trainee, epoch: int) -> None:
    if getattr(trainee.hooks, "on_epoch_end", None) is not None:
        trainee.hooks.on_epoch_end(epoch)
    check_finite(trainee.model, epoch, trainee.state.step)  # before anything evaluates or saves


def train_epochs(trainees: Sequence[Trainee], data, device: torch.device,
                 on_epoch_end: Callable[[list[Trainee]], None], dist: Dist = Dist(),
                 step: Step = step_each) -> None:
    """Train every trainee to its `cfg.epochs` on `data.batches(epoch)`; after each epoch,
    `on_epoch_end(the trainees that finished it)`. Failures stay in each trainee's `error`."""
    for trainee in trainees:
        if trainee.net is None:
            trainee.net = wrap(trainee.model, dist, device)
    alive = [t for t in trainees if t.error is None]
    for epoch in range(1, max((t.cfg.epochs for t in alive), default=0) + 1):
        alive = [t for t in alive if t.error is None]
        active = [t for t in alive if t.state.epoch == epoch - 1 and epoch <= t.cfg.epochs]
        active = guard(active, lambda t: _begin_epoch(t, epoch))
        if not active:
            continue
        started, waited, pairs = time.perf_counter(), 0.0, 0
        for batch, wait in timed(data.batches(epoch, dist)):
            waited, pairs = waited + wait, pairs + len(batch["index"])
            active = step(active, batch, data.steps_per_epoch, device, dist)
            if not active:
                break
        wall = max(time.perf_counter() - started, 1e-9)
        for trainee in active:  # each member's pairs/s is the job's: they all saw every pair
            trainee.state.perf = {"pairs_per_s": pairs * dist.world / wall,
                                  "data_wait_share": waited / wall}
            trainee.state.epoch = epoch
        active = guard(active, lambda t: _end_epoch(t, epoch))
        if active:
            on_epoch_end(active)


def train(cfg: Training, model, data, optimizer, state: TrainState,
          on_epoch_end: Callable[[TrainState, dict[str, float]], None],
          device: torch.device, hooks=None, dist: Dist = Dist()) -> TrainState:
    """One model through the loop; its failure is raised. `on_epoch_end(state, mean losses)`."""
    trainee = Trainee(cfg, model, optimizer, state, hooks)
    train_epochs([trainee], data, device,
                 lambda ended: on_epoch_end(trainee.state, trainee.losses()), dist)
    if trainee.error is not None:
        raise trainee.error
    return trainee.state
