"""DECREE in a report: per model of a study (a selected pre-trained model or a cleaned one), the
inverted trigger's L1 and PL1-norm, whether DECREE flags it, and whether it was trained on
poisoned data; per study, the AUROC of 1 - PL1 as a score for "poisoned" over its models (and for
"backdoored": ASR above the report's threshold, where the study has both kinds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from xspec.reports.matrix import attack_of, defence_of
from xspec.reports.queries import frame

ROWS = """
WITH final AS (
    SELECT * FROM xr_eval
    QUALIFY row_number() OVER (PARTITION BY node_id ORDER BY epoch DESC) = 1
),
d AS (
    SELECT x.study, x.node_id, x.lineage, x.pretrain_objective, x.clean_objective,
        n.config->>'$.input' AS input, n.deps->>'$[0]' AS model_id,
        max(m.value) FILTER (WHERE m.metric = 'l1') AS l1,
        max(m.value) FILTER (WHERE m.metric = 'pl1') AS pl1,
        max(m.value) FILTER (WHERE m.metric = 'found') AS found,
        max(m.value) FILTER (WHERE m.metric = 'flagged') AS flagged,
        max(m.value) FILTER (WHERE m.metric = 'epochs') AS epochs
    FROM xr_nodes x
    JOIN nodes n ON n.id = x.node_id AND n.study = x.study
    JOIN metrics m ON m.node_id = x.node_id AND m.split = 'decree'
    WHERE x.kind = 'decree'
    GROUP BY ALL
)
SELECT d.*, f.top1, f.asr FROM d LEFT JOIN final f ON f.node_id = d.model_id
ORDER BY d.study, d.pretrain_objective, d.input DESC, d.node_id
"""


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve (ties count half); None without both labels."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def models(con, asr_threshold: float) -> pd.DataFrame:
    """One row per decree node: the model it inverted, its trigger's norms and the decision."""
    rows = frame(con, ROWS)
    if rows.empty:
        return rows
    lineage = rows["lineage"].map(lambda v: json.loads(v) if isinstance(v, str) else (v or {}))
    rows["attack"] = lineage.map(attack_of)
    rows["poisoned"] = rows["attack"] != "none"
    rows["defence"] = ["none (pre-trained)" if inp == "select" else defence_of(lin, obj)
                       for inp, lin, obj in zip(rows["input"], lineage, rows["clean_objective"])]
    rows["backdoored"] = [None if pd.isna(a) else bool(a > asr_threshold) for a in rows["asr"]]
    rows["flagged"] = rows["flagged"].astype(bool)
    rows["found"] = rows["found"].astype(bool)
    return rows.drop(columns=["lineage"])


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per study: models, flagged, poisoned, flagged among poisoned and clean, and the AUROCs."""
    out = []
    for study, group in rows.groupby("study", sort=True):
        score = 1 - group["pl1"].astype(float)
        known = group[group["backdoored"].notna()]
        out.append({
            "study": study, "models": len(group), "flagged": int(group["flagged"].sum()),
            "poisoned": int(group["poisoned"].sum()),
            "flagged_poisoned": int((group["flagged"] & group["poisoned"]).sum()),
            "flagged_clean": int((group["flagged"] & ~group["poisoned"]).sum()),
            "auroc_poisoned": auroc(score, group["poisoned"]),
            "auroc_backdoored": auroc(1 - known["pl1"].astype(float),
                                      known["backdoored"].astype(bool)) if len(known) else None,
        })
    return pd.DataFrame(out)


def section(con, asr_threshold: float) -> dict | None:
    rows = models(con, asr_threshold)
    if rows.empty:
        return None
    return {"models": rows.replace({np.nan: None}).to_dict("records"),
            "summary": summary(rows).replace({np.nan: None}).to_dict("records")}
