"""Named queries over the results store, each returning a pandas DataFrame.

Values are always bound as `?` parameters; the SQL below is built only from constants. Spec fields
are read from `nodes.lineage`, the flattened {"<kind>.<field>": value} map of a node and its
upstream nodes. Eval metrics are fractions in [0, 1] with their denominator `n`.

The paper's Table 2 compares, per pre-training objective, the selected (original) model with the
most accurate cleaning epoch whose ASR stays under a threshold. Queries assume one selected model
per pre-training objective in a study, as in the paper (one study per dataset and attack).
"""

from __future__ import annotations

import pandas as pd


def _kind_order(column: str) -> str:
    """SQL expression ordering node kinds as the pipeline runs them."""
    kinds = ("poison", "pretrain", "select", "clean")
    whens = " ".join(f"WHEN '{kind}' THEN {i}" for i, kind in enumerate(kinds))
    return f"CASE {column} {whens} ELSE {len(kinds)} END"



_EVAL_PIVOT = """
    max(m.value) FILTER (WHERE m.metric = 'top1') AS top1,
    max(m.n) FILTER (WHERE m.metric = 'top1') AS top1_n,
    max(m.value) FILTER (WHERE m.metric = 'asr') AS asr,
    max(m.n) FILTER (WHERE m.metric = 'asr') AS asr_n
"""

CLEANING_POINTS = f"""
SELECT * FROM (
    SELECT
        n.id AS node_id, n.name,
        json_extract_string(n.lineage, '$."pretrain.objective"') AS pretrain_objective,
        json_extract_string(n.lineage, '$."clean.objective"') AS clean_objective,
        CAST(json_extract_string(n.lineage, '$."clean.lr"') AS DOUBLE) AS lr,
        CAST(json_extract_string(n.lineage, '$."clean.ssl_weight"') AS DOUBLE) AS ssl_weight,
        m.epoch,
        {_EVAL_PIVOT}
    FROM nodes n JOIN metrics m ON m.node_id = n.id
    WHERE n.study = ? AND n.kind = 'clean' AND m.split = 'eval' AND m.epoch >= 0
    GROUP BY ALL
)
WHERE top1 IS NOT NULL AND asr IS NOT NULL
"""

STARTING_POINTS = f"""
SELECT * FROM (
    SELECT
        n.id AS node_id, n.name,
        json_extract_string(n.lineage, '$."pretrain.objective"') AS objective,
        json_extract_string(n.lineage, '$."select.policy"') AS policy,
        m.epoch,
        {_EVAL_PIVOT}
    FROM nodes n JOIN metrics m ON m.node_id = n.id
    WHERE n.study = ? AND n.kind = 'select' AND m.split = 'eval'
    GROUP BY ALL
)
WHERE top1 IS NOT NULL AND asr IS NOT NULL
"""

TABLE2 = f"""
WITH points AS ({CLEANING_POINTS}),
starts AS ({STARTING_POINTS}),
best AS (
    SELECT * FROM points
    WHERE epoch >= 1 AND asr <= ?
    QUALIFY row_number() OVER (
        PARTITION BY pretrain_objective, clean_objective
        ORDER BY top1 DESC, asr, lr, node_id, epoch
    ) = 1
),
groups AS (
    SELECT pretrain_objective, clean_objective,
        count(DISTINCT node_id) AS runs,
        count(*) FILTER (WHERE epoch >= 1) AS cleaning_epochs
    FROM points GROUP BY ALL
)
SELECT
    g.pretrain_objective, g.clean_objective, g.runs, g.cleaning_epochs,
    s.top1 AS original_top1, s.asr AS original_asr,
    b.top1 AS best_top1, b.asr AS best_asr, b.lr AS best_lr, b.epoch AS best_epoch,
    b.node_id AS best_node, b.name AS best_name,
    100 * (b.top1 - s.top1) / NULLIF(s.top1, 0) AS relative_change_pct
FROM groups g
LEFT JOIN starts s ON s.objective = g.pretrain_objective
LEFT JOIN best b
    ON b.pretrain_objective = g.pretrain_objective AND b.clean_objective = g.clean_objective
ORDER BY g.pretrain_objective, g.clean_objective
"""

PRETRAIN_CURVES = """
SELECT
    n.id AS node_id, n.name,
    json_extract_string(n.lineage, '$."pretrain.objective"') AS objective,
    m.epoch,
    CASE WHEN m.split = 'train' THEN 'loss' ELSE m.metric END AS metric,
    avg(m.value) AS value
FROM nodes n JOIN metrics m ON m.node_id = n.id
WHERE n.study = ? AND n.kind = 'pretrain' AND m.epoch >= 1
    AND ((m.split = 'eval' AND m.metric IN ('top1', 'asr'))
        OR (m.split = 'train' AND m.metric = 'loss'))
GROUP BY ALL
ORDER BY objective, node_id, metric, m.epoch
"""

RUN_TABLE = f"""
SELECT n.id AS node_id, n.kind, n.name, n.status, n.error, n.updated,
    max(m.epoch) AS last_epoch
FROM nodes n LEFT JOIN metrics m ON m.node_id = n.id AND m.split = 'eval'
WHERE n.study = ?
GROUP BY n.id, n.kind, n.name, n.status, n.error, n.updated
ORDER BY {_kind_order("n.kind")}, n.name, n.id
"""

NODE_COUNTS = f"""
SELECT coalesce(kind, 'all') AS kind,
    count(*) FILTER (WHERE status = 'pending') AS pending,
    count(*) FILTER (WHERE status = 'running') AS running,
    count(*) FILTER (WHERE status = 'done') AS done,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) AS total
FROM nodes WHERE study = ?
GROUP BY ROLLUP (nodes.kind)
ORDER BY grouping(nodes.kind), {_kind_order("nodes.kind")}, nodes.kind
"""


def _frame(con, sql: str, params: list) -> pd.DataFrame:
    return con.execute(sql, params).df()


def cleaning_points(con, study: str) -> pd.DataFrame:
    """One row per clean node and eval epoch (0 = the starting model) with top1, asr and their n."""
    sql = CLEANING_POINTS + " ORDER BY pretrain_objective, clean_objective, lr, node_id, epoch"
    return _frame(con, sql, [study])


def starting_points(con, study: str) -> pd.DataFrame:
    """The selected pre-trained models (the paper's "original" models): objective, top1, asr."""
    return _frame(con, STARTING_POINTS + " ORDER BY objective, node_id", [study])


def table2(con, study: str, asr_threshold: float) -> pd.DataFrame:
    """Per pre-training x cleaning objective: original top1/ASR and the best cleaning epoch.

    The best epoch is the one with the highest top1 among cleaning epochs >= 1 whose ASR is at
    most `asr_threshold` (ties: lower ASR, then lower lr); its columns are NULL when no epoch
    reached the threshold. `relative_change_pct` is 100 * (best - original) / original.
    """
    return _frame(con, TABLE2, [study, study, asr_threshold])


def pretrain_curves(con, study: str) -> pd.DataFrame:
    """Long format per pre-training node and epoch: metric in (top1, asr, loss) and its value."""
    return _frame(con, PRETRAIN_CURVES, [study])


def run_table(con, study: str) -> pd.DataFrame:
    """Every node of the study in pipeline order: kind, name, status, error, last eval epoch."""
    return _frame(con, RUN_TABLE, [study])


def node_counts(con, study: str) -> pd.DataFrame:
    """Node counts per kind and status, with a final 'all' row."""
    return _frame(con, NODE_COUNTS, [study])
