"""The field's baselines in a report: pre-training defences (top-1 and ASR of the selected
checkpoint per defence and objective, Wilson intervals, the ASR change against the undefended
run of the same objective) and detection of poisoned pairs (AUROC, AUPRC, TPR at 1 % FPR per
detector, and ROC curves from each detect node's scores.parquet)."""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from xspec.extend.registry import defences_of
from xspec.reports.charts import to_spec

DETECTION = """
SELECT n.study, n.node_id, n.name, n.pretrain_objective, n.pretrain_id,
    split_part(m.split, ':', 2) AS detector,
    max(m.value) FILTER (WHERE m.metric = 'auroc') AS auroc,
    max(m.value) FILTER (WHERE m.metric = 'auprc') AS auprc,
    max(m.value) FILTER (WHERE m.metric = 'tpr_at_1fpr') AS tpr_at_1fpr,
    max(m.n) AS pairs
FROM xr_nodes n JOIN metrics m ON m.node_id = n.node_id
WHERE n.kind = 'detect' AND m.split LIKE 'detect:%'
GROUP BY ALL ORDER BY n.study, n.pretrain_objective, n.node_id, detector
"""


def _defences_by_pretrain(con) -> dict[str, str]:
    """{pretrain node: "roclip" / "safeclip" / ... / "none"} from the nodes' lineage; a
    detect-then-retrain run is named by its detector and drop share."""
    names = [d.name for d in defences_of("pretrain")]
    found = {}
    for node_id, lineage in con.execute(
            "SELECT node_id, lineage FROM xr_nodes WHERE kind = 'pretrain'").fetchall():
        keys = json.loads(lineage) if isinstance(lineage, str) else (lineage or {})
        on = sorted({n for n in names for k in keys if k.startswith(f"pretrain.{n}.")
                     or k == f"pretrain.{n}"})
        if keys.get("pretrain.drop.detector"):  # detect-then-retrain (`[detect.retrain]`)
            on.append(f"retrain without top {100 * keys['pretrain.drop.drop']:g} % "
                      f"{keys['pretrain.drop.detector']}")
        found[node_id] = "+".join(on) or "none"
    return found


def pretrain_defences(con, table3: pd.DataFrame) -> pd.DataFrame:
    """Table 3's rows with the defence each pre-training run used and its ASR change against
    the undefended run of the same study and objective; empty when no run used a defence."""
    by_node = _defences_by_pretrain(con)
    rows = table3.assign(defence=table3["pretrain_id"].map(by_node).fillna("none"))
    if not (rows["defence"] != "none").any():
        return rows.iloc[0:0]
    base = rows[rows["defence"] == "none"].groupby(["study", "pretrain_objective"])["asr"].first()
    keys = list(zip(rows["study"], rows["pretrain_objective"]))
    rows["asr_change"] = [100 * (asr - base.get(key, np.nan)) if asr is not None else np.nan
                          for asr, key in zip(rows["asr"], keys)]
    return rows.sort_values(["study", "pretrain_objective", "defence"], kind="stable")


def detection(con) -> pd.DataFrame:
    frame = con.execute(DETECTION).df()
    by_node = _defences_by_pretrain(con)
    return frame.assign(defence=frame["pretrain_id"].map(by_node).fillna("none"))


def roc_points(workspace: Path, table: pd.DataFrame, most: int = 200) -> pd.DataFrame:
    """ROC curve points per detect node and detector, thinned to at most `most` each."""
    from sklearn.metrics import roc_curve

    parts = []
    for node_id, group in table.groupby("node_id", sort=False):
        path = workspace / "runs" / f"detect-{node_id[:12]}" / "scores.parquet"
        if not path.exists():
            continue
        scores = pd.read_parquet(path)
        first = group.iloc[0]
        model = f"{first['pretrain_objective']} · {first['defence']}"
        for detector in group["detector"]:
            if detector not in scores:
                continue
            kept = scores[scores[detector].notna()]
            fpr, tpr, _ = roc_curve(kept["poisoned"], kept[detector])
            pick = np.unique(np.linspace(0, len(fpr) - 1, min(most, len(fpr))).astype(int))
            parts.append(pd.DataFrame({"model": f"{first['study']}: {model}",
                                       "detector": detector, "fpr": fpr[pick],
                                       "tpr": tpr[pick]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def roc_chart(points: pd.DataFrame) -> dict:
    """One panel per pre-trained model, one line per detector (the diagonal is chance)."""
    chance = pd.concat([pd.DataFrame({"model": m, "detector": "chance", "fpr": [0.0, 1.0],
                                      "tpr": [0.0, 1.0]}) for m in points["model"].unique()])
    lines = alt.Chart(pd.concat([points, chance], ignore_index=True)).mark_line().encode(
        x=alt.X("fpr:Q", title="false positive rate", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("tpr:Q", title="true positive rate", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("detector:N", title="detector"),
        strokeDash=alt.condition(alt.datum.detector == "chance", alt.value([4, 4]),
                                 alt.value([1, 0])),
        tooltip=["model:N", "detector:N", alt.Tooltip("fpr:Q", format=".3f"),
                 alt.Tooltip("tpr:Q", format=".3f")])
    return to_spec(lines.properties(width=260, height=260).facet(
        facet=alt.Facet("model:N", title=None), columns=3))
