"""What a training node writes as it trains: metric rows, epoch checkpoints, the resume point
(last.pt), status (with the unreadable-image counts and their limit), provenance and log."""

from __future__ import annotations

import time

from xspec.errors import DataError
from xspec.runtime import provenance
from xspec.runtime.models import activation
from xspec.runtime.node import Context
from xspec.runtime.records import MetricsLog, save_checkpoint
from xspec.runtime.resume import model_optimizer_state


def bad_images(ctx: Context, data, evaluator) -> dict:
    """Count unreadable images; past the spec's limit, stop with the count."""
    counts = {"bad_train_images": len(data.skipped), "bad_eval_images": evaluator.bad_images}
    limit = ctx.settings.max_bad_fraction
    for (name, count), total in zip(counts.items(), (len(data.pairs.captions),
                                                     len(evaluator.data.labels))):
        if count > limit * total:
            raise DataError(f"{count} of {total} {name.split('_')[1]} images are unreadable, "
                            f"more than data.max_bad_fraction = {limit}; "
                            "see `xspec data check SPEC`")
    return counts


def log_eval(metrics: MetricsLog, epoch: int, step: int, scores: dict) -> None:
    for name, (value, n) in scores.items():
        metrics.add(epoch, "eval", name, value, n, step)
    for split, name, value, n in getattr(scores, "rows", ()):  # the other evaluation sets
        metrics.add(epoch, split, name, value, n, step)


class Recorder:
    """One training node's results on disk. `keep_all`: every epoch's checkpoint (pre-training,
    whose epochs the select node chooses among), else only the last."""

    def __init__(self, ctx: Context, metrics: MetricsLog, keep_all: bool):
        self.ctx, self.metrics, self.keep_all = ctx, metrics, keep_all
        self.last = ctx.run.checkpoints / "last.pt"
        self._clock = time.monotonic()

    def log_start(self, scores: dict, heldout: tuple[float, int] | None) -> None:
        """The starting model's evaluation, as epoch 0."""
        log_eval(self.metrics, 0, 0, scores)
        if heldout is not None:
            self.metrics.add(0, "heldout", "mmcl", *heldout, step=0)
        self.metrics.flush()

    def end_epoch(self, trainee, scores: dict, heldout: tuple[float, int] | None, data,
                  evaluator) -> None:
        """The epoch `trainee` (a `xspec.runtime.loop.Trainee`) has just finished."""
        state, losses = trainee.state, trainee.losses()
        self._rows(state, losses, scores, heldout, data.steps_per_epoch)
        self._checkpoints(trainee)
        self.ctx.run.set_status("running", epoch=state.epoch, **bad_images(self.ctx, data,
                                                                            evaluator))
        now = time.monotonic()  # the epoch's wall time: training, evaluation and saving
        provenance.add_epoch(self.ctx.run, state.epoch, now - self._clock)
        self._clock = now
        summary = ", ".join(f"{k} {v[0]:.3f}" for k, v in scores.items())
        self.ctx.log(f"epoch {state.epoch}/{self.ctx.cfg.epochs}: loss "
                     f"{losses.get('loss', float('nan')):.4f}, {summary}")

    def _rows(self, state, losses: dict, scores: dict, heldout, steps: int) -> None:
        for name, value in losses.items():
            self.metrics.add(state.epoch, "train", name, value, steps, state.step)
        for name, value in state.perf.items():
            self.metrics.add(state.epoch, "perf", name, value, steps, state.step)
        if heldout is not None:
            self.metrics.add(state.epoch, "heldout", "mmcl", *heldout, step=state.step)
        log_eval(self.metrics, state.epoch, state.step, scores)

    def _checkpoints(self, trainee) -> None:
        """The epoch's checkpoint (and optimizer state), then the metric rows, then last.pt:
        a resume point never holds an epoch whose rows are not on disk."""
        ctx, cfg, state, model = self.ctx, self.ctx.cfg, trainee.state, trainee.model
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if self.keep_all or state.epoch == cfg.epochs:
            save_checkpoint(ctx.run.checkpoint(state.epoch),
                            {"model": weights, "epoch": state.epoch, "node_id": ctx.node["id"],
                             "activation": activation(model)})
        if self.keep_all and cfg.save_optimizer:  # a cleaning run continues with it
            save_checkpoint(ctx.run.checkpoints / f"optimizer_{state.epoch}.pt",
                            model_optimizer_state(trainee.optimizer))
        self.metrics.flush()
        save_checkpoint(self.last, {"model": weights,
                                    "optimizer": model_optimizer_state(trainee.optimizer),
                                    "epoch": state.epoch, "step": state.step,
                                    "node_id": ctx.node["id"], "config": ctx.config,
                                    "metrics_rows": len(self.metrics.rows)})

    def finish(self) -> None:
        """A finished node needs no resume point (its epoch checkpoints stay)."""
        self.last.unlink(missing_ok=True)
