"""Checkpoint-selection policies: which cleaned model would a practitioner keep?

The policies are the registered ones with scope "clean" (`xspec.extend.POLICIES`: the built-in
oracle, final, best_accuracy and min_mmcl of `xspec.builtin.selection`, and any a study's
plugins add), each defined once and shared with the runtime (`xspec.extend.selection`).

Runs are grouped by study, pre-training objective, cleaning objective and every other setting
that varies between the study's cleaning runs (defence fields included), so a group's runs
differ only in their learning rate (and seed): different defences are never pooled. Every
cleaning epoch (>= 1) of a group's runs with an ASR is a candidate. A policy picks one epoch per
run (`pick`), then one run (`run_key`: highest top-1, or the policy's `better`).

The spread columns summarise the per-run picks across runs (min / median / max), i.e. how much
the outcome depends on the learning rate; `runs_picked` counts runs that have a pick (for the
oracle, runs that reached the threshold at all) and `runs_under` picks with ASR <= threshold.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from xspec.extend.registry import POLICIES
from xspec.extend.selection import SelectionContext, epoch_rows, pick, run_key
from xspec.reports.queries import frame

CANDIDATES = """
SELECT c.study, c.pretrain_objective, c.clean_objective, c.settings, c.node_id, c.name, c.lr,
    m.epoch, m.split, m.metric, m.value, m.n
FROM xr_clean c JOIN metrics m ON m.node_id = c.node_id
WHERE m.epoch >= 1 AND (m.split = 'eval' OR (m.split IN ('train', 'heldout')
                                              AND m.metric = 'mmcl'))
    AND c.node_id IN (SELECT node_id FROM xr_eval)
ORDER BY c.study, c.node_id, m.epoch
"""

GROUPS = """
SELECT study, pretrain_objective, clean_objective, settings, count(*) AS runs,
    list(DISTINCT seed ORDER BY seed) AS seeds
FROM xr_clean GROUP BY ALL
ORDER BY study, pretrain_objective, clean_objective, settings
"""

GROUP = ["study", "pretrain_objective", "clean_objective", "settings"]
COLUMNS = [*GROUP[:3], "runs", "seeds", "policy", "runs_picked", "runs_under", "top1_min",
           "top1_median", "top1_max", "asr_min", "asr_median", "asr_max", "top1", "top1_n",
           "asr", "asr_n", "lr", "epoch", "mmcl", "heldout", "settings", "node_id", "name",
           "metrics"]


def clean_policies() -> list:
    """The policies of the table, in registration order (built-ins first)."""
    return [p for p in POLICIES if "clean" in p.scope]


def order() -> list[str]:
    return [p.name for p in clean_policies()]


def _runs(con) -> dict[tuple, list[dict]]:
    """Per group, each run's facts and its evaluated epochs with an ASR."""
    candidates = frame(con, CANDIDATES)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for key, rows in candidates.groupby([*GROUP, "node_id"], sort=False):
        first, node_id = rows.iloc[0], key[-1]
        epochs = [r for r in epoch_rows(rows.to_dict("records")) if _known(r.get("asr"))]
        if epochs:
            groups[tuple(key[:-1])].append(
                {"node_id": node_id, "name": first["name"], "lr": first["lr"],
                 "settings": first["settings"], "pretrain_objective": key[1],
                 "clean_objective": key[2], "epochs": epochs})
    return groups


def _known(value) -> bool:
    return value is not None and not pd.isna(value)


def _row(group: tuple, runs: int, seeds, policy, picks: list[tuple[dict, dict]],
         threshold: float) -> dict:
    row = dict(zip(GROUP, group), runs=runs, seeds=seeds, policy=policy.name,
               runs_picked=len(picks) if picks else None)
    if not picks:
        return row
    values = pd.DataFrame([p for _, p in picks])
    row["runs_under"] = int((values["asr"] <= threshold).sum())
    for metric in ("top1", "asr"):
        row.update({f"{metric}_min": values[metric].min(),
                    f"{metric}_median": values[metric].median(),
                    f"{metric}_max": values[metric].max()})
    run, best = min(picks, key=lambda rp: run_key(policy, rp[1], (
        rp[0]["lr"], rp[0]["node_id"], rp[1]["epoch"])))
    extra = {k: v for k, v in best.items() if k not in (
        "epoch", "top1", "top1_n", "asr", "asr_n", "mmcl", "heldout", "train_mmcl",
        "heldout_mmcl") and not k.endswith("_n")}
    row.update(top1=best.get("top1"), top1_n=best.get("top1_n"), asr=best.get("asr"),
               asr_n=best.get("asr_n"), lr=run["lr"], epoch=best["epoch"],
               mmcl=best.get("mmcl"), heldout=best.get("heldout"), node_id=run["node_id"],
               name=run["name"], metrics=extra)
    return row


def selection_policies(con, asr_threshold: float) -> pd.DataFrame:
    """One row per group (see the module docstring) and policy, with the picked checkpoint
    (top1, asr, their n, lr, epoch, mmcl, node, its other metrics) and the per-run spread."""
    runs, rows = _runs(con), []
    for group in frame(con, GROUPS).itertuples(index=False):
        key = tuple(getattr(group, g) for g in GROUP)
        for policy in clean_policies():
            picks = []
            for run in runs.get(key, []):
                ctx = SelectionContext("clean", asr_threshold, run={
                    k: v for k, v in run.items() if k != "epochs"})
                chosen = pick(policy, run["epochs"], None, ctx)
                if chosen is not None:
                    picks.append((run, chosen))
            rows.append(_row(key, group.runs, group.seeds, policy, picks, asr_threshold))
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("runs_picked", "runs_under", "epoch", "top1_n", "asr_n"):
        table[column] = table[column].astype("Int64")
    _label(table, asr_threshold)
    return table


def _label(table: pd.DataFrame, asr_threshold: float) -> None:
    threshold = f"{100 * asr_threshold:g}%"
    picked = table.loc[table["policy"] == "min_mmcl", "heldout"].dropna()
    source = "held-out" if len(picked) and picked.astype(bool).all() else "training"
    labels = {p.name: p.label.replace("{threshold}", threshold).replace(
        "{mmcl_source}", source) for p in clean_policies()}
    table["label"] = table["policy"].map(labels)
