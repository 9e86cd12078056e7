"""Where a training node starts: its own last.pt (a resumed run), or the beginning, with the
optimiser state the spec asks for (`clean.optimizer = "pretrain"` continues pre-training's)."""

from __future__ import annotations

import os
from pathlib import Path

from xspec.errors import DataError
from xspec.runtime.handoffs import start_point
from xspec.runtime.node import Context
from xspec.runtime.records import MetricsLog, load_checkpoint
from xspec.runtime.train import TrainState


def model_optimizer_state(optimizer) -> dict:
    """The optimizer state of the model's two parameter groups, without per-epoch heads."""
    return first_groups(optimizer.state_dict())


def first_groups(state: dict) -> dict:
    groups = state["param_groups"][:2]
    keep = {i for group in groups for i in group["params"]}
    return {"state": {i: s for i, s in state["state"].items() if i in keep},
            "param_groups": groups}


def parameters(model) -> dict:
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


def resume(ctx: Context, model, optimizer, metrics: MetricsLog,
           continues_optimizer: bool) -> tuple[TrainState, dict | None]:
    """(the state to train on from, the trainable parameters the node started from when it
    resumed — on the CPU — or None when it starts now). Loads last.pt into model and optimizer,
    and keeps the metric rows of the epochs it holds."""
    last, start = ctx.run.checkpoints / "last.pt", None
    saved = resumable(ctx, last, metrics)
    if continues_optimizer and saved is None:
        continue_optimizer(ctx, optimizer, pretrain_optimizer(ctx))
    state = TrainState()
    if saved is not None:
        start = {n: p.cpu() for n, p in parameters(model).items()}
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(first_groups(saved["optimizer"]))
        state = TrainState(saved["epoch"], saved["step"])
        ctx.log(f"resuming after epoch {state.epoch} (step {state.step})")
    # Without last.pt nothing was finished: drop everything, epoch-0 evaluation included.
    metrics.keep_through(state.epoch if last.exists() else -1)
    return state, start


def pretrain_optimizer(ctx: Context) -> dict:
    """The AdamW state saved with the pre-training checkpoint cleaning starts from."""
    path = start_point(ctx).get("optimizer")
    if not path:
        raise DataError("clean.optimizer = 'pretrain': the selected pre-training checkpoint has "
                        "no optimizer state (compile the spec again: its pre-training run keeps it)")
    return load_checkpoint(Path(path))


def continue_optimizer(ctx: Context, optimizer, saved: dict) -> None:
    """Continue with the pre-training AdamW state, as the original code does (src/main.py:131).
    `load_state_dict` also restores each group's hyper-parameters: the learning rate is set
    again at every step, but the weight decay stays the pre-training run's."""
    asked = [group["weight_decay"] for group in optimizer.param_groups]
    optimizer.load_state_dict(first_groups(saved))
    kept = [group["weight_decay"] for group in optimizer.param_groups]
    if kept != asked:
        ctx.log(f"optimizer continued from pre-training: weight decay {kept[0]:g} restored from "
                f"its checkpoint (clean.weight_decay = {asked[0]:g} has no effect)")
