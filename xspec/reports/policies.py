"""Checkpoint-selection policies: which cleaned model would a practitioner keep?

For each study, pre-training objective and cleaning objective, every cleaning epoch (>= 1) of
every run (all learning rates and other settings) is a candidate. A policy picks one checkpoint
per run, then one run:

- oracle: per run the most accurate epoch with ASR <= threshold; then the most accurate run.
  Needs the ASR, which a defender does not know; the paper's Table 2 reports this one.
- final: per run the last evaluated epoch; then the most accurate run (no ASR knowledge).
- best_accuracy: per run the most accurate epoch; then the most accurate run (no ASR).
- min_mmcl: per run the epoch with the lowest MMCL loss on held-out clean pairs (split
  "heldout", which cleaning runs log every epoch); then the run with the lowest one. This is
  model selection on a validation loss, which a defender can do. Runs that logged no held-out
  loss fall back to the training MMCL loss, and the label says so.

The spread columns summarise the per-run picks across runs (min / median / max), i.e. how much
the outcome depends on the learning rate; `runs_picked` counts runs that have a pick (for the
oracle, runs that reached the threshold at all) and `runs_under` picks with ASR <= threshold.
"""

from __future__ import annotations

import pandas as pd

from xspec.reports.queries import frame

POLICIES = {
    "oracle": "oracle: best top-1 with ASR ≤ {threshold}",
    "final": "final epoch",
    "best_accuracy": "best top-1, ASR unknown",
    "min_mmcl": "lowest {mmcl_source} MMCL loss",
}

SELECTION = """
WITH pts AS MATERIALIZED (
    SELECT c.study, c.pretrain_objective, c.clean_objective, c.settings, c.node_id, c.name,
        c.lr, e.epoch, e.top1, e.top1_n, e.asr, e.asr_n, coalesce(h.value, t.value) AS mmcl,
        h.value IS NOT NULL AS heldout
    FROM xr_clean c
    JOIN xr_eval e ON e.node_id = c.node_id
    LEFT JOIN xr_train t ON t.node_id = e.node_id AND t.epoch = e.epoch AND t.metric = 'mmcl'
    LEFT JOIN metrics h ON h.node_id = e.node_id AND h.epoch = e.epoch AND h.split = 'heldout'
        AND h.metric = 'mmcl'
    WHERE e.epoch >= 1 AND e.asr IS NOT NULL
),
per_run AS (
    SELECT 'oracle' AS policy, * FROM pts WHERE asr <= $threshold
    QUALIFY row_number() OVER (PARTITION BY study, node_id ORDER BY top1 DESC, asr, epoch) = 1
    UNION ALL BY NAME
    SELECT 'final' AS policy, * FROM pts
    QUALIFY row_number() OVER (PARTITION BY study, node_id ORDER BY epoch DESC) = 1
    UNION ALL BY NAME
    SELECT 'best_accuracy' AS policy, * FROM pts
    QUALIFY row_number() OVER (PARTITION BY study, node_id ORDER BY top1 DESC, epoch) = 1
    UNION ALL BY NAME
    SELECT 'min_mmcl' AS policy, * FROM pts WHERE mmcl IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY study, node_id ORDER BY mmcl, epoch) = 1
),
pick AS (
    SELECT * FROM per_run
    QUALIFY row_number() OVER (
        PARTITION BY study, pretrain_objective, clean_objective, policy
        ORDER BY CASE WHEN policy = 'min_mmcl' THEN mmcl ELSE -top1 END,
            asr, lr, node_id, epoch) = 1
),
spread AS (
    SELECT study, pretrain_objective, clean_objective, policy,
        count(*) AS runs_picked, count(*) FILTER (WHERE asr <= $threshold) AS runs_under,
        min(top1) AS top1_min, median(top1) AS top1_median, max(top1) AS top1_max,
        min(asr) AS asr_min, median(asr) AS asr_median, max(asr) AS asr_max
    FROM per_run GROUP BY ALL
),
pairs AS (
    SELECT study, pretrain_objective, clean_objective, count(*) AS runs,
        list(DISTINCT seed ORDER BY seed) AS seeds
    FROM xr_clean GROUP BY ALL
),
policies AS (SELECT * FROM (VALUES ('oracle', 1), ('final', 2), ('best_accuracy', 3),
                                   ('min_mmcl', 4)) v(policy, ord))
SELECT r.study, r.pretrain_objective, r.clean_objective, r.runs, r.seeds, p.policy,
    s.runs_picked, s.runs_under, s.top1_min, s.top1_median, s.top1_max,
    s.asr_min, s.asr_median, s.asr_max,
    k.top1, k.top1_n, k.asr, k.asr_n, k.lr, k.epoch, k.mmcl, k.heldout, k.settings, k.node_id,
    k.name
FROM pairs r CROSS JOIN policies p
LEFT JOIN spread s ON s.study = r.study AND s.pretrain_objective = r.pretrain_objective
    AND s.clean_objective = r.clean_objective AND s.policy = p.policy
LEFT JOIN pick k ON k.study = r.study AND k.pretrain_objective = r.pretrain_objective
    AND k.clean_objective = r.clean_objective AND k.policy = p.policy
ORDER BY r.study, r.pretrain_objective, r.clean_objective, p.ord
"""


def selection_policies(con, asr_threshold: float) -> pd.DataFrame:
    """One row per study, objective pair and policy (see the module docstring), with the
    picked checkpoint (top1, asr, their n, lr, epoch, mmcl, node) and the per-run spread."""
    table = frame(con, SELECTION, {"threshold": asr_threshold})
    threshold = f"{100 * asr_threshold:g}%"
    picked = table.loc[table["policy"] == "min_mmcl", "heldout"].dropna()
    source = "held-out" if len(picked) and picked.astype(bool).all() else "training"
    table["label"] = table["policy"].map(
        lambda p: POLICIES[p].format(threshold=threshold, mmcl_source=source))
    return table
