"""Checkpoint selection, shared by the runtime and the report: a policy (`register_policy`)
picks an epoch from a run's evaluated epochs.

- the runtime: a select node picks the pre-training epoch cleaning starts from
  (`pretrain.select`, policies with scope "pretrain");
- the report: per cleaning run, the epoch a practitioner would keep, then one run of each group
  of runs that differ only in their learning rate and seed (policies with scope "clean", the
  report's selection-policy table).

Both call `pick(policy, rows, arg, ctx)` on rows built by `epoch_rows`, so a policy is defined
once. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from xspec.extend.registry import Policy, resolve


@dataclass
class SelectionContext:
    """What a policy's behaviour gets as `ctx`:

    - scope: "pretrain" (a select node) or "clean" (the report, per cleaning run);
    - asr_threshold: the report's ASR threshold (a fraction; None in a select node);
    - run: the run's facts: node_id, name, and in the report study, pretrain_objective,
      clean_objective, lr, settings (its varying spec fields as "key=value, ...");
    - dep(kind): in a select node, the run folder of its dependency of that kind
      (`match_accuracy` reads its reference's `dep("select")`); None in the report;
    - config: the select node's config (None in the report); log(text): a line in its log."""

    scope: str
    asr_threshold: float | None = None
    run: dict = field(default_factory=dict)
    dep: Callable[[str], Any] | None = None
    config: Any = None
    log: Callable[[str], None] = print


def epoch_rows(metrics: Iterable[dict]) -> list[dict]:
    """Long metric rows ({"epoch", "split", "metric", "value", "n"}) -> one dict per evaluated
    epoch, oldest first: {"epoch", <eval metric>: value, "<eval metric>_n": n, ...,
    "train_mmcl": the epoch's training MMCL loss, "heldout_mmcl": its held-out MMCL loss,
    "mmcl": held-out where logged, else training, "heldout": whether it is held-out}."""
    by_epoch: dict[int, dict] = {}
    for row in metrics:
        epoch, split, name = int(row["epoch"]), row["split"], row["metric"]
        value = row["value"]
        if split == "eval":
            by_epoch.setdefault(epoch, {"epoch": epoch})[name] = value
            by_epoch[epoch][f"{name}_n"] = row.get("n")
        elif (split, name) in (("train", "mmcl"), ("heldout", "mmcl")):
            by_epoch.setdefault(epoch, {"epoch": epoch})[f"{split}_mmcl"] = value
    rows = []
    for epoch in sorted(by_epoch):
        row = by_epoch[epoch]
        if not any(k for k in row if k.endswith("_n")):
            continue  # losses without an evaluation: nothing to select on
        held = _number(row.get("heldout_mmcl"))
        row["heldout"] = held is not None
        row["mmcl"] = held if held is not None else _number(row.get("train_mmcl"))
        rows.append(row)
    return rows


def pick(policy: Policy, rows: list[dict], arg: str | None, ctx: SelectionContext) -> dict | None:
    """The row of the epoch `policy` picks, or None (no candidate, e.g. no epoch under the ASR
    threshold). Rows missing a metric the policy needs are no candidates."""
    usable = [r for r in rows if all(_number(r.get(need)) is not None for need in policy.needs)]
    if not usable:
        return None
    epoch = resolve(policy.behaviour)(usable, arg, ctx)
    if epoch is None:
        return None
    return next((r for r in usable if r["epoch"] == epoch), {"epoch": epoch})


def run_key(policy: Policy, row: dict, tiebreak: tuple = ()) -> tuple:
    """Sort key among several runs' picks (smallest first): `policy.better` ("top1": highest
    top-1, then lowest ASR; "min:<metric>" / "max:<metric>"), then `tiebreak`."""
    asr = _number(row.get("asr"))
    tail = (math.inf if asr is None else asr, *tiebreak)
    if policy.better == "top1":
        top1 = _number(row.get("top1"))
        return (math.inf if top1 is None else -top1, *tail)
    way, _, metric = policy.better.partition(":")
    value = _number(row.get(metric))
    if value is None:
        return (math.inf, *tail)
    return (value if way == "min" else -value, *tail)


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
