"""Training nodes: each a `Member` (the trainee the epoch loop steps, the recorder of its
results, resumed from its last.pt), evaluated and recorded at every epoch's end; one node alone
(`fit`) or a packed job's siblings (`xspec.runtime.packed`) go through the same loop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xspec.runtime.defences import defence_views
from xspec.runtime.distributed import Dist
from xspec.runtime.evaluator import Evaluator, HeldOutLoss
from xspec.runtime.loop import Step, Trainee, guard, step_each, train_epochs
from xspec.runtime.node import Context
from xspec.runtime.objectives import needed_views
from xspec.runtime.optim import adamw
from xspec.runtime.pipeline import TrainingData
from xspec.runtime.recorder import Recorder
from xspec.runtime.records import MetricsLog
from xspec.runtime.resume import parameters, resume
from xspec.runtime.tokens import with_truncation


class Member:
    """One training node in the epoch loop (`xspec.runtime.loop`): the trainee it steps (model,
    optimiser, state, defences) and the recorder of its results; resumed from its last.pt."""

    def __init__(self, ctx: Context, model, keep_all: bool, defences: Callable | None = None):
        cfg = ctx.cfg  # PretrainConfig or CleanConfig
        self.ctx, self.defences = ctx, defences  # defences: `xspec.runtime.defences.defences`
        optimizer = adamw(model, cfg.lr, cfg.weight_decay)
        metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"], damaged_ok=True)
        state, self._start = resume(ctx, model, optimizer, metrics, cfg.continues_optimizer)
        self.trainee = Trainee(cfg, model, optimizer, state, progress=ctx.progress)
        self.recorder = Recorder(ctx, metrics, keep_all)

    def start_parameters(self) -> dict:
        """The trainable parameters the node started from (before any epoch, resumed or not)."""
        if self._start is None:
            return parameters(self.trainee.model)
        device = next(self.trainee.model.parameters()).device
        return {name: p.to(device) for name, p in self._start.items()}

    def defend(self, data: TrainingData) -> None:
        """Build the node's defences, if any (after the starting model's evaluation)."""
        if self.defences is not None:
            self.trainee.hooks = self.defences(self.trainee.model, data, self.trainee.optimizer,
                                               self.start_parameters)

    def fail(self, exc: Exception) -> None:
        self.trainee.fail(exc)


def _score(members: list[Member], evaluator: Evaluator, heldout: HeldOutLoss | None,
           dist: Dist, record: Callable) -> None:
    """Evaluate the members' models in one pass (every rank its share), the held-out loss in
    another, then record(member, scores, held-out) for each on the main rank."""
    models = [m.trainee.model for m in members]
    scores = evaluator.many(models, dist)
    if dist.main:
        held = heldout.many(models) if heldout is not None else [None] * len(models)
        outcome = {id(m): pair for m, pair in zip(members, zip(scores, held))}
        guard(members, lambda m: record(m, *outcome[id(m)]))
    dist.barrier()  # the other ranks wait while rank 0 writes


def train_members(members: list[Member], data: TrainingData, evaluator: Evaluator,
                  heldout: HeldOutLoss | None, device, dist: Dist = Dist(),
                  evaluate_start: bool = True, step: Step = step_each) -> None:
    """The members through the one epoch loop, each evaluated and recorded at its epochs' ends
    (and before training when `evaluate_start`). A member that fails keeps its error in
    `member.trainee.error`; the others go on. `step` steps the members on one batch (one after
    the other by default; `xspec.runtime.fused.FusedStep` in one vmapped pass)."""
    starting = [m for m in members if m.trainee.state.epoch == 0 and evaluate_start]
    if starting:
        _score(starting, evaluator, heldout, dist,
               lambda m, scores, held: m.recorder.log_start(scores, held))
    members = guard([m for m in members if m.trainee.error is None], lambda m: m.defend(data))
    own = [m.trainee.hooks.batches for m in members if getattr(m.trainee.hooks, "batches", None)]
    if own and len(members) > 1:  # xspec.compiler.packing never packs such a node
        raise ValueError("a defence with batches of its own trains alone, not packed")
    of = {id(m.trainee): m for m in members}

    def on_epoch_end(ended: list) -> None:
        _score([of[id(t)] for t in ended], evaluator, heldout, dist,
               lambda m, scores, held: m.recorder.end_epoch(m.trainee, scores, held, data,
                                                            evaluator))

    train_epochs([m.trainee for m in members], own[0] if own else data, device, on_epoch_end,
                 dist, step)
    if dist.main:
        for member in members:
            if member.trainee.error is None:
                member.recorder.finish()


def fit(ctx: Context, model, data: TrainingData, evaluator: Evaluator, keep_all: bool,
        evaluate_start: bool, ablations: Callable | None = None,
        heldout: HeldOutLoss | None = None) -> None:
    """Train one node with per-epoch evaluation and checkpoints, resuming from `last.pt` if
    present: the epoch loop with a list of one; its failure is raised."""
    member = Member(ctx, model, keep_all, ablations)
    train_members([member], data, evaluator, heldout, ctx.device, ctx.dist, evaluate_start)
    if member.trainee.error is not None:
        raise member.trainee.error


def _augmenter(views: set[str], eda: str = "xspec", placement: str = "crop"):
    if "image_aug" not in views:
        return None
    from xspec.runtime.augment import SslAugmenter

    return SslAugmenter(None, eda=eda, placement=placement)


def training_data(ctx: Context, model, pairs, indices, captions, poisoned, attack,
                   tokenizer, normalize) -> TrainingData:
    cfg = ctx.cfg
    views = needed_views(cfg.objective) | defence_views(ctx.cfg)
    augmenter = _augmenter(views, cfg.eda, cfg.image_augment)
    if augmenter is not None and cfg.letterless == "skip":
        indices = with_letters(indices, captions, ctx)
    return TrainingData(pairs, indices, captions, poisoned, attack,
                        with_truncation(tokenizer, cfg.truncation), normalize,
                        cfg.batch_size, cfg.seed, views,
                        augmenter, ctx.settings.workers, ctx.device,
                        text_once=cfg.text_augment == "once")


def with_letters(indices: np.ndarray, captions, ctx: Context) -> np.ndarray:
    """`letterless = "skip"`: the pairs whose caption the original's EDA can augment."""
    from xspec.runtime.eda_cleanclip import has_letters

    kept = np.array([i for i in indices.tolist() if has_letters(captions[i])], dtype=np.int64)
    if len(kept) < len(indices):
        ctx.log(f"letterless = 'skip': {len(indices) - len(kept)} pair(s) whose caption has no "
                "letters are left out")
    return kept
