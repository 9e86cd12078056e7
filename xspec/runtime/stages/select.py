"""The select node: the pre-training epoch cleaning starts from, by a registered policy (the
built-ins are in `xspec.builtin.selection`; `xspec.extend.selection` runs them)."""

from __future__ import annotations

from xspec.errors import DataError
from xspec.extend.registry import POLICIES
from xspec.extend.selection import SelectionContext, epoch_rows, pick
from xspec.runtime.handoffs import node_config
from xspec.runtime.node import Context
from xspec.runtime.records import MetricsLog


def select(ctx: Context) -> None:
    """Pick the pre-trained checkpoint that cleaning starts from."""
    from xspec.spec.policies import parse_policy

    source = ctx.dep("pretrain")
    rows = MetricsLog(source.metrics_file, "").rows
    top1 = {r["epoch"]: r["value"] for r in rows if (r["split"], r["metric"]) == ("eval", "top1")}
    policy = ctx.cfg.policy
    name, arg = ((policy, ctx.cfg.reference) if ctx.cfg.reference is not None
                 else (parse_policy(policy).name, parse_policy(policy).arg))
    chosen = pick(POLICIES.get(name), epoch_rows(rows), arg,
                  SelectionContext("pretrain", run={"node_id": ctx.node["id"]}, dep=ctx.dep,
                                   config=ctx.cfg, log=ctx.log))
    epoch = chosen["epoch"] if chosen is not None else None
    if epoch not in top1 or not source.checkpoint(epoch).exists():
        raise DataError(f"select: no checkpoint of epoch {epoch} in {source.path}")
    optimizer = source.checkpoints / f"optimizer_{epoch}.pt"
    ctx.run.write_selected({
        "epoch": epoch, "checkpoint": str(source.checkpoint(epoch)),
        "arch": node_config(source).model.arch, "pretrain_node": source.read_node()["id"],
        "optimizer": str(optimizer) if optimizer.exists() else None})
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows = []
    for r in rows:
        if r["epoch"] == epoch and r["split"] == "eval":
            metrics.add(epoch, "eval", r["metric"], r["value"], r["n"], r["step"])
    metrics.flush()
    ctx.log(f"selected epoch {epoch} by {policy}: top1 {top1[epoch]:.3f}")
