"""Named queries over the xr_* tables of `xspec.reports.load`, each returning a pandas DataFrame.

Accuracy (`top1`) and attack success rate (`asr`) are fractions in [0, 1] with their
denominators (`top1_n`, `asr_n`); `xspec.reports.stats.with_wilson` adds 95 % intervals. Rows
carry their `study`, so one query serves a single study and a comparison of several.

Groups. Table 2 has one row per study, pre-training objective, cleaning objective and setting
(the values of the other varying keys, e.g. "ssl_weight=0.5, poisons=10"); each group's runs
differ only in learning rate. The original model of a group is the select node its runs clean
from (the paper's "original" accuracy), even when a shrink-and-perturb node sits in between.
Selection policies (`xspec.reports.policies`) pool every run of a study's objective pair.
"""

from __future__ import annotations

import pandas as pd

from xspec.reports.load import LAST_EVAL, kind_order


def frame(con, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


CLEANING_EPOCHS = """
SELECT c.study, c.pretrain_objective, c.clean_objective, c.settings, c.node_id, c.name,
    c.lr, c.select_id, e.epoch, e.top1, e.top1_n, e.asr, e.asr_n
FROM xr_clean c JOIN xr_eval e ON e.node_id = c.node_id
WHERE e.epoch >= 1 AND e.asr IS NOT NULL
"""

TABLE2 = f"""
WITH pts AS MATERIALIZED ({CLEANING_EPOCHS}),
groups AS (
    SELECT study, pretrain_objective, clean_objective, settings,
        any_value(settings_json) AS settings_json, count(*) AS runs,
        count(*) FILTER (WHERE status = 'done') AS runs_done,
        min(select_id) AS select_id, count(DISTINCT select_id) AS starts,
        list(DISTINCT seed ORDER BY seed) AS seeds
    FROM xr_clean GROUP BY study, pretrain_objective, clean_objective, settings
),
epochs AS (
    SELECT study, pretrain_objective, clean_objective, settings, count(*) AS cleaning_epochs
    FROM pts GROUP BY ALL
),
best AS (
    SELECT * FROM pts WHERE asr <= ?
    QUALIFY row_number() OVER (
        PARTITION BY study, pretrain_objective, clean_objective, settings
        ORDER BY top1 DESC, asr, lr, node_id, epoch) = 1
)
SELECT g.study, g.pretrain_objective, g.clean_objective, g.settings, g.settings_json,
    g.runs, g.runs_done, g.starts, g.seeds, coalesce(ep.cleaning_epochs, 0) AS cleaning_epochs,
    s.epoch AS original_epoch, s.top1 AS original_top1, s.top1_n AS original_top1_n,
    s.asr AS original_asr, s.asr_n AS original_asr_n,
    b.top1 AS best_top1, b.top1_n AS best_top1_n, b.asr AS best_asr, b.asr_n AS best_asr_n,
    b.lr AS best_lr, b.epoch AS best_epoch, b.node_id AS best_node, b.name AS best_name,
    100 * (b.top1 - s.top1) / NULLIF(s.top1, 0) AS relative_change_pct
FROM groups g
LEFT JOIN epochs ep ON ep.study = g.study AND ep.pretrain_objective = g.pretrain_objective
    AND ep.clean_objective = g.clean_objective AND ep.settings = g.settings
LEFT JOIN {LAST_EVAL} s ON s.node_id = g.select_id
LEFT JOIN best b ON b.study = g.study AND b.pretrain_objective = g.pretrain_objective
    AND b.clean_objective = g.clean_objective AND b.settings = g.settings
ORDER BY g.study, g.pretrain_objective, g.clean_objective, g.settings
"""

TABLE3 = f"""
SELECT s.study, s.pretrain_objective, coalesce(ps.settings, '') AS settings,
    coalesce(ps.settings_json, '{{}}') AS settings_json, s.policy, s.reference, s.seed,
    s.node_id, s.name, s.status, p.node_id AS pretrain_id, p.name AS pretrain_name,
    (SELECT max(epoch) FROM xr_eval x WHERE x.node_id = p.node_id) AS pretrain_epochs,
    e.epoch, e.top1, e.top1_n, e.asr, e.asr_n
FROM xr_nodes s
LEFT JOIN xr_nodes p ON p.study = s.study AND p.node_id = s.pretrain_id
LEFT JOIN xr_settings ps ON ps.study = p.study AND ps.node_id = p.node_id
LEFT JOIN {LAST_EVAL} e ON e.node_id = s.node_id
WHERE s.kind = 'select'
ORDER BY s.study, s.pretrain_objective, settings, s.policy, s.node_id
"""

SHRINK_PERTURB = f"""
WITH cand AS (
    SELECT node_id, step AS candidate,
        max(value) FILTER (WHERE metric = 'top1') AS top1,
        max(value) FILTER (WHERE metric = 'asr') AS asr
    FROM metrics
    WHERE split = 'candidate' AND node_id IN (
        SELECT node_id FROM xr_nodes WHERE kind = 'shrink_perturb')
    GROUP BY node_id, step
),
nodes AS (
    SELECT n.*, e.top1, e.top1_n, e.asr, e.asr_n,
        TRY_CAST(n.lineage->>'$."shrink_perturb.asr_threshold"' AS DOUBLE) AS sp_threshold,
        n.lineage->'$."shrink_perturb.shrink"' AS shrinks,
        n.lineage->'$."shrink_perturb.perturb"' AS perturbs,
        n.lineage->>'$."shrink_perturb.noise"' AS noise
    FROM xr_nodes n LEFT JOIN {LAST_EVAL} e ON e.node_id = n.node_id
    WHERE n.kind = 'shrink_perturb'
),
summary AS (
    SELECT n.study, n.node_id, count(c.candidate) AS candidates,
        count(*) FILTER (WHERE c.asr <= n.sp_threshold) AS under_threshold,
        min(c.candidate) FILTER (WHERE c.top1 = n.top1 AND c.asr IS NOT DISTINCT FROM n.asr)
            AS chosen
    FROM nodes n LEFT JOIN cand c ON c.node_id = n.node_id
    GROUP BY n.study, n.node_id
)
SELECT n.study, n.pretrain_objective, n.policy, n.node_id, n.name, n.status, n.noise,
    n.sp_threshold, s.candidates, s.under_threshold, s.chosen,
    TRY_CAST(json_extract_string(n.shrinks,
        '$[' || (s.chosen // greatest(json_array_length(n.perturbs), 1)) || ']') AS DOUBLE)
        AS shrink,
    TRY_CAST(json_extract_string(n.perturbs,
        '$[' || (s.chosen % greatest(json_array_length(n.perturbs), 1)) || ']') AS DOUBLE)
        AS perturb,
    n.top1, n.top1_n, n.asr, n.asr_n
FROM nodes n JOIN summary s ON s.study = n.study AND s.node_id = n.node_id
ORDER BY n.study, n.pretrain_objective, n.node_id
"""

RUN_TABLE = f"""
SELECT n.study, n.node_id, n.kind, n.name, n.status, n.error, n.updated,
    n.kind || '-' || n.node_id[1:12] AS run_dir,
    (SELECT max(epoch) FROM metrics m WHERE m.node_id = n.node_id AND m.split = 'eval')
        AS last_epoch,
    (SELECT coalesce((x.detail->>'$.bad_train_images')::BIGINT, 0)
            + coalesce((x.detail->>'$.bad_eval_images')::BIGINT, 0)
     FROM nodes x WHERE x.study = n.study AND x.id = n.node_id) AS bad_images,
    (SELECT 1 + nullif(json_array_length(x.detail->'$.packed_with'), 0)
     FROM nodes x WHERE x.study = n.study AND x.id = n.node_id) AS packed,
    p.pairs_per_s, p.data_wait_share
FROM xr_nodes n LEFT JOIN xr_perf p ON p.node_id = n.node_id
ORDER BY n.study, {kind_order("n.kind")}, n.name, n.node_id
"""

NODE_COUNTS = f"""
SELECT study, coalesce(kind, 'all') AS kind,
    count(*) FILTER (WHERE status = 'pending') AS pending,
    count(*) FILTER (WHERE status IN ('queued', 'running')) AS running,
    count(*) FILTER (WHERE status = 'done') AS done,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) AS total
FROM xr_nodes
GROUP BY GROUPING SETS ((study, kind), (study))
ORDER BY study, grouping(kind), {kind_order("kind")}, kind
"""

STUDIES = """
WITH sig AS (
    SELECT study, node_id, kind || ':' || md5(coalesce(string_agg(key || '=' || coalesce(value, ''),
        ',' ORDER BY key) FILTER (WHERE key NOT LIKE '%seed'), '')) AS node_sig
    FROM xr_kv GROUP BY study, node_id, kind
),
families AS (
    SELECT study, md5(string_agg(DISTINCT node_sig, ',' ORDER BY node_sig)) AS family
    FROM sig GROUP BY study
)
SELECT n.study, any_value(st.spec_path) AS spec_path, any_value(st.updated) AS updated,
    any_value(st.spec->>'$.notes') AS notes_json,
    string_agg(DISTINCT n.seed, ', ' ORDER BY n.seed) AS seed,
    string_agg(DISTINCT n.lineage->>'$."poison.kind"', ', ') AS attack,
    coalesce(any_value(f.family), n.study) AS family,
    count(*) AS nodes, count(*) FILTER (WHERE n.status = 'done') AS done,
    count(*) FILTER (WHERE n.status = 'failed') AS failed
FROM xr_nodes n
LEFT JOIN studies st ON st.name = n.study
LEFT JOIN families f ON f.study = n.study
GROUP BY n.study
ORDER BY list_position(?::VARCHAR[], n.study)
"""


def table2(con, asr_threshold: float) -> pd.DataFrame:
    """Per study x pre-training objective x cleaning objective x setting: the original model and
    the most accurate cleaning epoch (>= 1) whose ASR is at most `asr_threshold`.

    Ties go to lower ASR, then lower learning rate; the best_* columns are NULL when no epoch
    reached the threshold. `relative_change_pct` = 100 * (best - original) / original.
    """
    return frame(con, TABLE2, [asr_threshold])


def table3(con) -> pd.DataFrame:
    """Per pre-training run and selection policy: the selected checkpoint's epoch, top1, asr."""
    return frame(con, TABLE3)


def shrink_perturb(con) -> pd.DataFrame:
    """Per shrink-and-perturb node: candidates, how many met its ASR bar, the chosen one."""
    return frame(con, SHRINK_PERTURB)


def run_table(con) -> pd.DataFrame:
    """Every node in pipeline order: kind, name, status, error, run folder, last eval epoch and,
    for training nodes, mean pairs/s and share of epoch time spent waiting for data."""
    return frame(con, RUN_TABLE)


def node_counts(con) -> pd.DataFrame:
    """Node counts per study, kind and status, with an 'all' row per study."""
    return frame(con, NODE_COUNTS)


def studies(con, order: list[str]) -> pd.DataFrame:
    """Per study: spec path, seed(s), node counts and `family`, equal for studies whose nodes
    differ only in seeds (their results are pooled across seeds)."""
    return frame(con, STUDIES, [order])
