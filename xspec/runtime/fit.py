"""Training a node: per-epoch evaluation, metrics, checkpoints and resume around `train`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xspec.errors import DataError
from xspec.runtime.evaluator import Evaluator, HeldOutLoss
from xspec.runtime.handoffs import start_point
from xspec.runtime.models import activation
from xspec.runtime.node import Context
from xspec.runtime.objectives import needed_views
from xspec.runtime.defences import defence_views
from xspec.runtime.optim import adamw
from xspec.runtime import provenance
from xspec.runtime.pipeline import TrainingData
from xspec.runtime.records import MetricsLog, load_checkpoint, save_checkpoint
from xspec.runtime.tokens import with_truncation
from xspec.runtime.train import TrainState, train

def model_optimizer_state(optimizer) -> dict:
    """The optimizer state of the model's two parameter groups, without per-epoch heads."""
    return _first_groups(optimizer.state_dict())


def _first_groups(state: dict) -> dict:
    groups = state["param_groups"][:2]
    keep = {i for group in groups for i in group["params"]}
    return {"state": {i: s for i, s in state["state"].items() if i in keep},
            "param_groups": groups}


def _bad_images(ctx: Context, data: TrainingData, evaluator: Evaluator) -> dict:
    """Count unreadable images; past the spec's limit, stop with the count."""
    counts = {"bad_train_images": len(data.skipped), "bad_eval_images": evaluator.bad_images}
    limit = ctx.settings.get("max_bad_fraction", 0.01)
    for (name, count), total in zip(counts.items(), (len(data.pairs.captions),
                                                     len(evaluator.data.labels))):
        if count > limit * total:
            raise DataError(f"{count} of {total} {name.split('_')[1]} images are unreadable, "
                            f"more than data.max_bad_fraction = {limit}; "
                            "see `xspec data check SPEC`")
    return counts


def _log_eval(metrics: MetricsLog, epoch: int, step: int, scores: dict) -> None:
    for name, (value, n) in scores.items():
        metrics.add(epoch, "eval", name, value, n, step)
    for split, name, value, n in getattr(scores, "rows", ()):  # the other evaluation sets
        metrics.add(epoch, split, name, value, n, step)


def _parameters(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def resumable(ctx: Context, last: Path, metrics: MetricsLog) -> dict | None:
    """last.pt to resume from, or None to start from the beginning: when there is none, when it
    is damaged (moved aside to last.pt.damaged), or when metrics.parquet lost rows of epochs it
    has trained (they are computed again rather than missing); the log says which."""
    if not last.exists():
        return None
    try:
        saved = load_checkpoint(last)
    except DataError as exc:
        ctx.log(f"{exc}: moved aside to last.pt.damaged; starting again from the beginning")
        os.replace(last, last.with_name("last.pt.damaged"))
        return None
    kept = [r for r in metrics.rows if r["epoch"] <= saved["epoch"]]
    trained = {r["epoch"] for r in kept if r["split"] == "train"}
    short = (len(kept) < saved["metrics_rows"] if "metrics_rows" in saved  # else an older last.pt
             else not trained >= set(range(1, saved["epoch"] + 1)))
    if metrics.lost or short:
        ctx.log(f"{metrics.lost or str(metrics.path) + ' lacks rows'} of epochs {last} has "
                "trained: starting again from the beginning to compute them")
        last.unlink()
        return None
    return saved


class Member:
    """One training node's side of `fit`: its optimiser, metrics, resume state and what it
    records at each epoch's end. `fit` drives one; `xspec.runtime.packed` drives several
    that share their data and evaluation passes."""

    def __init__(self, ctx: Context, model, keep_all: bool):
        cfg = ctx.cfg  # PretrainConfig or CleanConfig
        self.ctx, self.model, self.keep_all = ctx, model, keep_all
        self.train_cfg = cfg  # the node's typed config: what `train` reads
        self.optimizer = adamw(model, cfg.lr, cfg.weight_decay)
        self.metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"], damaged_ok=True)
        self.state, self.last = TrainState(), ctx.run.checkpoints / "last.pt"
        self._start: dict | None = None
        self._clock = time.monotonic()
        saved = resumable(ctx, self.last, self.metrics)
        if cfg.continues_optimizer and saved is None:
            _continue_optimizer(ctx, self.optimizer, pretrain_optimizer(ctx))
        if saved is not None:
            # A resumed run still knows where it started (kept on the CPU until asked for).
            self._start = {n: p.cpu() for n, p in _parameters(model).items()}
            model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(_first_groups(saved["optimizer"]))
            self.state = TrainState(saved["epoch"], saved["step"])
            ctx.log(f"resuming after epoch {self.state.epoch} (step {self.state.step})")
        # Without last.pt nothing was finished: drop everything, epoch-0 evaluation included.
        self.metrics.keep_through(self.state.epoch if self.last.exists() else -1)

    def start_parameters(self) -> dict:
        """The trainable parameters the node started from (before any epoch, resumed or not)."""
        if self._start is None:
            return _parameters(self.model)
        device = next(self.model.parameters()).device
        return {name: p.to(device) for name, p in self._start.items()}

    def log_start(self, scores: dict, heldout: tuple[float, int] | None) -> None:
        """The starting model's evaluation, as epoch 0."""
        _log_eval(self.metrics, 0, 0, scores)
        if heldout is not None:
            self.metrics.add(0, "heldout", "mmcl", *heldout, step=0)
        self.metrics.flush()

    def end_epoch(self, losses: dict[str, float], scores: dict,
                  heldout: tuple[float, int] | None, data: TrainingData,
                  evaluator: Evaluator) -> None:
        ctx, cfg, state, model = self.ctx, self.ctx.cfg, self.state, self.model
        for name, value in losses.items():
            self.metrics.add(state.epoch, "train", name, value, data.steps_per_epoch, state.step)
        for name, value in state.perf.items():
            self.metrics.add(state.epoch, "perf", name, value, data.steps_per_epoch, state.step)
        if heldout is not None:
            self.metrics.add(state.epoch, "heldout", "mmcl", *heldout, step=state.step)
        _log_eval(self.metrics, state.epoch, state.step, scores)
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if self.keep_all or state.epoch == cfg.epochs:
            save_checkpoint(ctx.run.checkpoint(state.epoch),
                            {"model": weights, "epoch": state.epoch, "node_id": ctx.node["id"],
                             "activation": activation(model)})
        if self.keep_all and cfg.save_optimizer:  # a cleaning run continues with it
            save_checkpoint(ctx.run.checkpoints / f"optimizer_{state.epoch}.pt",
                            model_optimizer_state(self.optimizer))
        self.metrics.flush()
        save_checkpoint(self.last, {"model": weights,
                                    "optimizer": model_optimizer_state(self.optimizer),
                                    "epoch": state.epoch, "step": state.step,
                                    "node_id": ctx.node["id"], "config": ctx.config,
                                    "metrics_rows": len(self.metrics.rows)})
        ctx.run.set_status("running", epoch=state.epoch, **_bad_images(ctx, data, evaluator))
        now = time.monotonic()  # the epoch's wall time: training, evaluation and saving
        provenance.add_epoch(ctx.run, state.epoch, now - self._clock)
        self._clock = now
        summary = ", ".join(f"{k} {v[0]:.3f}" for k, v in scores.items())
        ctx.log(f"epoch {state.epoch}/{cfg.epochs}: loss "
                f"{losses.get('loss', float('nan')):.4f}, {summary}")

    def finish(self) -> None:
        """A finished node needs no resume point (its epoch checkpoints stay)."""
        self.last.unlink(missing_ok=True)


def fit(ctx: Context, model, data: TrainingData, evaluator: Evaluator, keep_all: bool,
        evaluate_start: bool, ablations: Callable | None = None,
        heldout: HeldOutLoss | None = None) -> None:
    """Train with per-epoch evaluation and checkpoints, resuming from `last.pt` if present."""
    member = Member(ctx, model, keep_all)
    if evaluate_start and member.state.epoch == 0:
        scores = evaluator(model, ctx.dist)
        if ctx.dist.main:
            member.log_start(scores, heldout(model) if heldout is not None else None)

    def on_epoch_end(state: TrainState, losses: dict[str, float]) -> None:
        scores = evaluator(model, ctx.dist)  # every rank scores its share of the set
        if ctx.dist.main:
            member.end_epoch(losses, scores, heldout(model) if heldout is not None else None,
                             data, evaluator)
        ctx.dist.barrier()  # the other ranks wait while rank 0 writes

    hooks = (ablations(model, data, member.optimizer, member.start_parameters)
             if ablations else None)
    train(member.train_cfg, model, hooks.batches if hooks and hooks.batches else data,
          member.optimizer, member.state, on_epoch_end, ctx.device, on_step=ctx.progress,
          extra_terms=hooks.terms if hooks else (),
          on_epoch_start=hooks.on_epoch_start if hooks else None, dist=ctx.dist, hooks=hooks)
    if ctx.dist.main:
        member.finish()


def pretrain_optimizer(ctx: Context) -> dict:
    """The AdamW state saved with the pre-training checkpoint cleaning starts from."""
    path = start_point(ctx).get("optimizer")
    if not path:
        raise DataError("clean.optimizer = 'pretrain': the selected pre-training checkpoint has "
                        "no optimizer state (compile the spec again: its pre-training run keeps it)")
    return load_checkpoint(Path(path))


def _continue_optimizer(ctx: Context, optimizer, saved: dict) -> None:
    """Continue with the pre-training AdamW state, as the original code does (src/main.py:131).
    `load_state_dict` also restores each group's hyper-parameters: the learning rate is set
    again at every step, but the weight decay stays the pre-training run's."""
    asked = [group["weight_decay"] for group in optimizer.param_groups]
    optimizer.load_state_dict(_first_groups(saved))
    kept = [group["weight_decay"] for group in optimizer.param_groups]
    if kept != asked:
        ctx.log(f"optimizer continued from pre-training: weight decay {kept[0]:g} restored from "
                f"its checkpoint (clean.weight_decay = {asked[0]:g} has no effect)")


def _augmenter(views: set[str], eda: str = "xspec", placement: str = "crop"):
    if "image_aug" not in views:
        return None
    from xspec.runtime.augment import SslAugmenter

    return SslAugmenter(None, eda=eda, placement=placement)


def training_data(ctx: Context, model, pairs, indices, captions, poisoned, attack,
                   tokenizer, normalize) -> TrainingData:
    cfg = ctx.cfg
    views = needed_views(cfg.objective) | defence_views(ctx.config)
    augmenter = _augmenter(views, cfg.eda, cfg.image_augment)
    if augmenter is not None and cfg.letterless == "skip":
        indices = with_letters(indices, captions, ctx)
    return TrainingData(pairs, indices, captions, poisoned, attack,
                        with_truncation(tokenizer, cfg.truncation), normalize,
                        cfg.batch_size, cfg.seed, views,
                        augmenter, ctx.settings.get("workers", 0), ctx.device,
                        text_once=cfg.text_augment == "once")


def with_letters(indices: np.ndarray, captions, ctx: Context) -> np.ndarray:
    """`letterless = "skip"`: the pairs whose caption the original's EDA can augment."""
    from xspec.runtime.eda_cleanclip import has_letters

    kept = np.array([i for i in indices.tolist() if has_letters(captions[i])], dtype=np.int64)
    if len(kept) < len(indices):
        ctx.log(f"letterless = 'skip': {len(indices) - len(kept)} pair(s) whose caption has no "
                "letters are left out")
    return kept
