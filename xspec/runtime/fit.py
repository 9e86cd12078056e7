"""Training a node: per-epoch evaluation, metrics, checkpoints and resume around `train`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from xspec.errors import DataError
from xspec.runtime.data import open_eval
from xspec.runtime.evaluate import clip80_templates, evaluate, zero_shot_classifier
from xspec.runtime.objectives import needed_views
from xspec.runtime.optim import adamw
from xspec.runtime.distributed import Dist
from xspec.runtime.pipeline import Normalizer, TrainingData, eval_batches, eval_loader
from xspec.runtime.context import Context
from xspec.runtime.models import activation
from xspec.runtime.records import MetricsLog, load_checkpoint, save_checkpoint
from xspec.runtime.objectives import mmcl
from xspec.runtime.train import TrainConfig, TrainState, encode, train

class Evaluator:
    """Zero-shot top-1/top-5 and ASR on the evaluation set, in one pass per call."""

    def __init__(self, cfg: dict, attack, tokenizer, normalize: Normalizer, size: int,
                 device: torch.device, settings: dict):
        self.data = open_eval(cfg["source"], size, settings.get("on_bad_image", "skip"))
        self.metrics, self.attack, self.tokenizer = cfg["metrics"], attack, tokenizer
        self.normalize, self.device, self.settings = normalize, device, settings
        self.skipped: set[int] = set()
        self.loader = None
        target = getattr(attack, "target", None)
        self.target_index = (self.data.classes.index(target)
                             if target and "asr" in self.metrics else None)

    def __call__(self, model, dist: Dist = Dist()) -> dict[str, tuple[float, int]]:
        """With several ranks, each scores its share of the batches and the counts are summed:
        every rank returns what one process scoring the whole set would."""
        classifier = zero_shot_classifier(model, self.tokenizer, list(self.data.classes),
                                          clip80_templates(), self.device)
        with_trigger = self.target_index is not None
        if self.loader is None:
            self.loader = eval_loader(self.data, self.attack, with_trigger,
                                      self.settings.get("workers", 0), self.device)
        batches = eval_batches(self.data, self.attack, self.normalize,
                               self.settings.get("eval_batch_size", 256), with_trigger,
                               skipped=self.skipped, loader=self.loader, dist=dist,
                               device=self.device)
        scores = evaluate(model, classifier, batches, self.target_index, dist)
        return {k: v for k, v in scores.items() if k in self.metrics}


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
    counts = {"bad_train_images": len(data.skipped), "bad_eval_images": len(evaluator.skipped)}
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


class HeldOutLoss:
    """MMCL loss on clean pairs the run never trains on: the validation loss a defender can
    compute (no trigger, no ASR needed). Logged as split "heldout", metric "mmcl"."""

    def __init__(self, data: TrainingData, device: torch.device):
        self.data, self.device = data, device

    @torch.no_grad()
    def __call__(self, model) -> tuple[float, int]:
        was_training = model.training
        model.eval()
        total, n = 0.0, 0
        for batch in self.data.batches(epoch=0):
            features = encode(model, batch, self.device)
            total += float(mmcl(features, model.logit_scale.exp())) * len(batch["image"])
            n += len(batch["image"])
        model.train(was_training)
        return total / max(1, n), n


def fit(ctx: Context, model, data: TrainingData, evaluator: Evaluator, keep_all: bool,
        evaluate_start: bool, ablations: Callable | None = None,
        heldout: HeldOutLoss | None = None) -> None:
    """Train with per-epoch evaluation and checkpoints, resuming from `last.pt` if present."""
    cfg = ctx.config
    train_cfg = TrainConfig(cfg["objective"], {"mmcl": cfg["mmcl_weight"], "ssl": cfg["ssl_weight"]},
                            cfg["epochs"], cfg["lr"], cfg["warmup_steps"])
    optimizer = adamw(model, cfg["lr"], cfg["weight_decay"])
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    state, last = TrainState(), ctx.run.checkpoints / "last.pt"
    if last.exists():
        saved = load_checkpoint(last)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(_first_groups(saved["optimizer"]))
        state = TrainState(saved["epoch"], saved["step"])
        ctx.log(f"resuming after epoch {state.epoch} (step {state.step})")
    # Without last.pt nothing was finished: drop everything, epoch-0 evaluation included.
    metrics.keep_through(state.epoch if last.exists() else -1)
    if evaluate_start and state.epoch == 0:
        scores = evaluator(model, ctx.dist)
        if ctx.dist.main:
            _log_eval(metrics, 0, 0, scores)
            if heldout is not None:
                metrics.add(0, "heldout", "mmcl", *heldout(model), step=0)
            metrics.flush()

    def on_epoch_end(state: TrainState, losses: dict[str, float]) -> None:
        scores = evaluator(model, ctx.dist)  # every rank scores its share of the set
        if ctx.dist.main:
            _end_epoch(state, losses, scores)
        ctx.dist.barrier()  # the other ranks wait while rank 0 writes

    def _end_epoch(state: TrainState, losses: dict[str, float], scores: dict) -> None:
        for name, value in losses.items():
            metrics.add(state.epoch, "train", name, value, data.steps_per_epoch, state.step)
        for name, value in state.perf.items():
            metrics.add(state.epoch, "perf", name, value, data.steps_per_epoch, state.step)
        if heldout is not None:
            metrics.add(state.epoch, "heldout", "mmcl", *heldout(model), step=state.step)
        _log_eval(metrics, state.epoch, state.step, scores)
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        if keep_all or state.epoch == cfg["epochs"]:
            save_checkpoint(ctx.run.checkpoint(state.epoch),
                            {"model": weights, "epoch": state.epoch, "node_id": ctx.node["id"],
                             "activation": activation(model)})
        metrics.flush()
        save_checkpoint(last, {"model": weights, "optimizer": model_optimizer_state(optimizer),
                               "epoch": state.epoch, "step": state.step,
                               "node_id": ctx.node["id"], "config": ctx.config})
        ctx.run.set_status("running", epoch=state.epoch, **_bad_images(ctx, data, evaluator))
        summary = ", ".join(f"{k} {v[0]:.3f}" for k, v in scores.items())
        ctx.log(f"epoch {state.epoch}/{cfg['epochs']}: loss {losses.get('loss', float('nan')):.4f}, "
                f"{summary}")

    terms, on_epoch_start = ablations(model, data, optimizer) if ablations else ((), None)
    train(train_cfg, model, data, optimizer, state, on_epoch_end, ctx.device,
          on_step=ctx.progress, extra_terms=terms, on_epoch_start=on_epoch_start, dist=ctx.dist)
    if ctx.dist.main and not ctx.settings.get("keep_resume_state", False):
        last.unlink(missing_ok=True)


def _augmenter(objective: str):
    if "image_aug" not in needed_views(objective):
        return None
    from xspec.runtime.augment import SslAugmenter

    return SslAugmenter(None)


def training_data(ctx: Context, model, pairs, indices, captions, poisoned, attack,
                   tokenizer, normalize) -> TrainingData:
    cfg = ctx.config
    return TrainingData(pairs, indices, captions, poisoned, attack, tokenizer, normalize,
                        cfg["batch_size"], cfg["seed"], needed_views(cfg["objective"]),
                        _augmenter(cfg["objective"]), ctx.settings.get("workers", 0), ctx.device)
