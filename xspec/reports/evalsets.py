"""The report's evaluation-set sections, for studies with sets beside the primary one.

- every set's figures for the models of the paper's table (the original model and the most
  accurate cleaned one under the ASR threshold, chosen on the primary set), primary first;
- robustness: each cleaned model (its final epoch) on every set against its starting model
  (epoch 0 of the same run);
- a Pareto chart per zero-shot set (the primary one is the report's main chart).

Nothing here changes for a study with the primary set only: `section` returns None.
"""

from __future__ import annotations

import pandas as pd

from xspec.reports import chartdata, charts, load
from xspec.reports.queries import frame, table2

ZERO_SHOT = ("top1", "asr")
RETRIEVAL = ("i2t_r1", "t2i_r1", "asr_r1")
LABELS = {"top1": "top-1", "asr": "ASR", "i2t_r1": "I→T R@1", "t2i_r1": "T→I R@1",
          "asr_r1": "trig. R@1", "probe_top1": "probe top-1"}

SETS = """
SELECT eval_set AS name, bool_or(split = 'eval') AS primary_set,
    CASE WHEN bool_or(split LIKE 'retrieval:%') THEN 'retrieval' ELSE 'zero-shot' END AS kind,
    bool_or(split LIKE 'probe:%') AS probed
FROM metrics
WHERE eval_set IS NOT NULL AND node_id IN (SELECT node_id FROM xr_clean)
GROUP BY eval_set
ORDER BY NOT primary_set, kind DESC, name
"""

# A set's values per run and epoch, for the runs of the report (a probe's as probe_<metric>).
VALUES = """
SELECT m.node_id, m.epoch, m.eval_set AS name,
    CASE WHEN m.split LIKE 'probe:%' THEN 'probe_' || m.metric ELSE m.metric END AS metric,
    max(m.value) AS value, max(m.n) AS n
FROM metrics m
WHERE m.eval_set IS NOT NULL AND m.node_id IN (SELECT node_id FROM xr_clean)
GROUP BY ALL
"""

# One zero-shot set's rows in xr_eval's shape; select nodes take their runs' epoch 0 (the
# starting model, evaluated on every set by each cleaning run).
SET_EVAL = f"""
CREATE OR REPLACE TEMP TABLE xr_eval AS
WITH rows AS ({load.EVAL_ROWS})
SELECT * FROM rows
UNION ALL
SELECT DISTINCT ON (c.select_id) c.select_id AS node_id, 0 AS epoch, r.top1, r.top1_n, r.asr,
    r.asr_n
FROM xr_clean c JOIN rows r ON r.node_id = c.node_id AND r.epoch = 0
"""


def _sets(con) -> list[dict]:
    sets = frame(con, SETS).to_dict("records")
    for s in sets:
        names = RETRIEVAL if s["kind"] == "retrieval" else ZERO_SHOT + (
            ("probe_top1",) if s["probed"] else ())
        s["metrics"] = [(m, LABELS[m]) for m in names]
    return sets


def _cells(values: dict, sets: list[dict], node: str, start: int, end: int) -> list[list]:
    """Per set, per metric: (start value, end value, change in points or None)."""
    out = []
    for s in sets:
        row = []
        for metric, _ in s["metrics"]:
            a = values.get((node, start, s["name"], metric))
            b = values.get((node, end, s["name"], metric))
            change = None if a is None or b is None or pd.isna(a) or pd.isna(b) else 100 * (b - a)
            row.append((a, b, change))
        out.append(row)
    return out


def section(con, asr_threshold: float) -> dict | None:
    """What the template shows of the other sets; None with the primary set only."""
    sets = _sets(con)
    if len(sets) < 2:
        return None
    found = frame(con, VALUES)
    values = {(r.node_id, r.epoch, r.name, r.metric): r.value for r in found.itertuples()}
    final = found.groupby("node_id")["epoch"].max().to_dict() if len(found) else {}
    chosen = []
    for row in table2(con, asr_threshold).itertuples():
        if row.best_node is None or pd.isna(row.best_epoch):
            continue
        chosen.append({"pretrain_objective": row.pretrain_objective,
                       "clean_objective": row.clean_objective, "settings": row.settings,
                       "name": row.best_name, "epoch": int(row.best_epoch),
                       "cells": _cells(values, sets, row.best_node, 0, int(row.best_epoch))})
    runs = frame(con, "SELECT node_id, name, settings FROM xr_clean ORDER BY pretrain_objective, "
                      "clean_objective, lr, node_id")
    robustness = [{"name": r.name, "settings": r.settings, "epoch": final[r.node_id],
                   "cells": _cells(values, sets, r.node_id, 0, final[r.node_id])}
                  for r in runs.itertuples() if final.get(r.node_id)]
    return {"sets": sets, "chosen": chosen, "robustness": robustness}


def pareto_blocks(con, sets: list[dict], asr_threshold: float, comparison: bool,
                  block) -> list:
    """A Pareto chart per non-primary zero-shot set; xr_eval is the primary's again after."""
    blocks = []
    try:
        for s in sets:
            if s["primary_set"] or s["kind"] != "zero-shot":
                continue
            con.execute(SET_EVAL, [f"eval:{s['name']}"])
            points = chartdata.pareto_points(con)
            if not len(points):
                continue
            blocks.append(block(
                f"chart-pareto-{s['name']}", f"Accuracy vs ASR on set {s['name']}",
                f"As the main Pareto chart, on evaluation set {s['name']}: every cleaning epoch "
                "of every run, the starting model as the red diamond.",
                charts.pareto_chart(points, chartdata.pareto_starts(con), asr_threshold,
                                    comparison)))
    finally:
        con.execute(load.EVAL, ["eval"])
    return blocks
