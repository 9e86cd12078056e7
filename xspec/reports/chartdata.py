"""The rows each chart draws, aggregated and bounded in DuckDB before pandas sees them.

A chart embeds its rows in the page, so every query here has a row budget. Below it, every row
is drawn. Above it, a deterministic subset (by a hash of node and epoch) is drawn and the frame's
`attrs["shown"]` / `attrs["total"]` let the caption say so; Pareto-front points are always kept.
"""

from __future__ import annotations

import math

import pandas as pd

from xspec.reports.load import LAST_EVAL
from xspec.reports.queries import CLEANING_EPOCHS, frame
from xspec.reports.stats import with_wilson

PARETO_BUDGET = 2000
ROW_BUDGET = 3000

PANEL_KEYS = "study, pretrain_objective, clean_objective"

PARETO = f"""
CREATE OR REPLACE TEMP TABLE xr_pareto AS
WITH pts AS ({CLEANING_EPOCHS}),
flagged AS (
    SELECT *, top1 > coalesce(max(top1) OVER (
        PARTITION BY {PANEL_KEYS} ORDER BY asr, top1 DESC, node_id, epoch
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), -1) AS front
    FROM pts
)
SELECT *, CASE WHEN front THEN row_number() OVER (
    PARTITION BY {PANEL_KEYS}, front ORDER BY asr DESC) END AS front_rank
FROM flagged
"""

PARETO_KEPT = f"""
SELECT * EXCLUDE (front_rank) FROM xr_pareto
WHERE (front AND (front_rank - 1) % $front_stride = 0)
    OR (NOT front AND hash(node_id, epoch) % $stride = 0)
ORDER BY {PANEL_KEYS}, asr, top1 DESC
"""

PARETO_STARTS = f"""
SELECT DISTINCT c.study, c.pretrain_objective, c.clean_objective, c.select_id AS node_id,
    s.name, coalesce(ps.settings, '') AS settings, e.epoch, e.top1, e.top1_n, e.asr, e.asr_n
FROM xr_clean c
JOIN xr_nodes s ON s.study = c.study AND s.node_id = c.select_id
LEFT JOIN xr_settings ps ON ps.study = c.study AND ps.node_id = c.pretrain_id
JOIN {LAST_EVAL} e ON e.node_id = c.select_id
WHERE e.asr IS NOT NULL
ORDER BY c.study, c.pretrain_objective, c.clean_objective, node_id
"""

# Runs drawn when not all fit: round-robin over (panel, learning rate) cells, by node hash.
FAIR_RUNS = f"""
SELECT * EXCLUDE (cell_rank) FROM (
    SELECT *, row_number() OVER (
        PARTITION BY {PANEL_KEYS}, lr ORDER BY hash(node_id), node_id) AS cell_rank
    FROM xr_clean)
QUALIFY row_number() OVER (ORDER BY cell_rank, hash(node_id), node_id) <= $max_runs
"""

TRAJECTORIES = f"""
SELECT r.study, r.pretrain_objective, r.clean_objective, r.settings, r.node_id, r.name, r.lr,
    e.epoch, e.top1, e.top1_n, e.asr, e.asr_n
FROM ({FAIR_RUNS}) r JOIN xr_eval e ON e.node_id = r.node_id
WHERE e.asr IS NOT NULL
ORDER BY {PANEL_KEYS}, r.lr, r.node_id, e.epoch
"""

PRETRAIN_CURVES = """
SELECT p.study, p.node_id, p.name, p.pretrain_objective, coalesce(s.settings, '') AS settings,
    e.epoch, e.top1, e.top1_n, e.asr, e.asr_n, t.value AS loss
FROM xr_nodes p
JOIN xr_eval e ON e.node_id = p.node_id
LEFT JOIN xr_settings s ON s.study = p.study AND s.node_id = p.node_id
LEFT JOIN xr_train t ON t.node_id = p.node_id AND t.epoch = e.epoch AND t.metric = 'loss'
WHERE p.kind = 'pretrain' AND e.epoch >= 1
ORDER BY p.study, p.pretrain_objective, p.node_id, e.epoch
"""

SELECTED = f"""
SELECT s.study, s.pretrain_id AS node_id, s.node_id AS select_id, s.policy, s.reference,
    e.epoch, e.top1, e.top1_n, e.asr, e.asr_n
FROM xr_nodes s JOIN {LAST_EVAL} e ON e.node_id = s.node_id
WHERE s.kind = 'select'
ORDER BY s.study, s.pretrain_id, s.policy
"""

LOSSES = f"""
WITH runs AS (
    SELECT study, node_id, name, kind, lr, pretrain_objective, clean_objective
    FROM xr_nodes WHERE kind = 'pretrain'
    UNION ALL BY NAME
    SELECT *, 'clean' AS kind FROM ({FAIR_RUNS})
)
SELECT r.study, r.node_id, r.name, r.kind, r.lr, r.pretrain_objective, r.clean_objective,
    coalesce(s.settings, '') AS settings, t.epoch, t.metric, t.value
FROM runs r
JOIN xr_train t ON t.node_id = r.node_id
LEFT JOIN xr_settings s ON s.study = r.study AND s.node_id = r.node_id
ORDER BY r.study, r.kind DESC, r.pretrain_objective, r.clean_objective, r.lr, r.node_id,
    t.metric, t.epoch
"""


def _bounded(data: pd.DataFrame, shown: int, total: int) -> pd.DataFrame:
    data.attrs.update(shown=shown, total=total)
    return data


def pareto_points(con, budget: int = PARETO_BUDGET) -> pd.DataFrame:
    """Cleaning epochs (>= 1) per panel with `front` marking the upper-left Pareto front: the
    points no other point of the panel beats on both accuracy (higher) and ASR (lower).

    Above `budget` rows, every k-th front point (from the highest ASR, so the most accurate
    point stays) and a hash-based subset of the others are kept, in all about `budget` rows."""
    con.execute(PARETO)
    total, fronts = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE front) FROM xr_pareto").fetchone()
    front_stride = max(1, math.ceil(fronts / (budget / 2)))
    room = budget - math.ceil(fronts / front_stride)
    stride = max(1, math.ceil((total - fronts) / max(room, 1)))
    data = with_wilson(frame(con, PARETO_KEPT, {"stride": stride, "front_stride": front_stride}))
    return _bounded(data, len(data), total)


def pareto_starts(con) -> pd.DataFrame:
    """The original (selected) model of every panel's runs."""
    return with_wilson(frame(con, PARETO_STARTS))


def _max_runs(con, table: str, rows_before: int = 0) -> tuple[int, int]:
    """(clean runs, how many fit in ROW_BUDGET given the most rows one run has in `table`)."""
    runs, per_run = con.execute(
        f"SELECT (SELECT count(*) FROM xr_clean), coalesce(max(k), 1) FROM ("
        f"SELECT count(*) AS k FROM {table} WHERE node_id IN (SELECT node_id FROM xr_clean) "
        f"GROUP BY node_id)").fetchone()
    return runs, max(1, (ROW_BUDGET - rows_before) // max(per_run, 1))


def trajectories(con) -> pd.DataFrame:
    """Every epoch (0 = the starting model) of the cleaning runs drawn: all of them when they
    fit the row budget, else a fair subset (the same number per panel and learning rate)."""
    runs, max_runs = _max_runs(con, "xr_eval")
    data = with_wilson(frame(con, TRAJECTORIES, {"max_runs": max_runs}))
    return _bounded(data, data["node_id"].nunique() if len(data) else 0, runs)


def pretrain_curves(con) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per pre-training run and epoch: top1, asr (with n) and training loss; and the
    checkpoints the select nodes picked (one row per select node)."""
    return with_wilson(frame(con, PRETRAIN_CURVES)), with_wilson(frame(con, SELECTED))


def loss_curves(con) -> pd.DataFrame:
    """Long format per training run, epoch and loss term: every pre-training run and the
    cleaning runs that fit the row budget (a fair subset, as for the trajectories)."""
    pre_rows = con.execute("SELECT count(*) FROM xr_train WHERE node_id IN "
                           "(SELECT node_id FROM xr_nodes WHERE kind = 'pretrain')").fetchone()[0]
    runs, max_runs = _max_runs(con, "xr_train", pre_rows)
    data = frame(con, LOSSES, {"max_runs": max_runs})
    shown = data.loc[data["kind"] == "clean", "node_id"].nunique() if len(data) else 0
    return _bounded(data, shown, runs)
