"""The evaluation metrics beyond top-1 and ASR (top5, asr_top5, a plugin's): a table of each
cleaning run's starting and last values, and a chart of their curves per epoch.

Every metric a run logged under split "eval" appears, registered or not (the report may read a
database whose plugins are not loaded); a registered metric's description becomes its caption.
"""

from __future__ import annotations

import pandas as pd

from xspec.extend.registry import METRICS
from xspec.reports.queries import frame

SHOWN_ELSEWHERE = ("top1", "asr")  # Table 2, the Pareto panels, the policies

EXTRA = """
SELECT c.study, c.node_id, c.name, 'clean' AS kind, c.lr, c.pretrain_objective,
    c.clean_objective, c.settings, m.epoch, m.metric, max(m.value) AS value, max(m.n) AS n
FROM xr_clean c JOIN metrics m ON m.node_id = c.node_id
WHERE m.split = 'eval' AND NOT list_contains(?::VARCHAR[], m.metric)
    AND c.node_id IN (SELECT node_id FROM xr_eval)
GROUP BY ALL
ORDER BY c.study, c.pretrain_objective, c.clean_objective, c.settings, c.lr, c.node_id,
    m.metric, m.epoch
"""


def curves(con) -> pd.DataFrame:
    """Long format: per cleaning run, epoch (0 = the starting model) and metric."""
    return frame(con, EXTRA, [list(SHOWN_ELSEWHERE)])


def names(data: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(data["metric"])) if len(data) else []


def table(data: pd.DataFrame) -> pd.DataFrame:
    """Per cleaning run: each metric at its first (the starting model) and last epoch."""
    if not len(data):
        return pd.DataFrame()
    keys = ["study", "node_id", "name", "lr", "pretrain_objective", "clean_objective",
            "settings"]
    first = data.loc[data.groupby([*keys, "metric"])["epoch"].idxmin()]
    last = data.loc[data.groupby([*keys, "metric"])["epoch"].idxmax()]
    wide = last.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
    start = first.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
    epochs = last.groupby(keys)["epoch"].max()
    out = wide.add_suffix("_last").join(start.add_suffix("_start")).join(epochs).reset_index()
    return out.sort_values(["study", "pretrain_objective", "clean_objective", "settings", "lr",
                            "node_id"]).reset_index(drop=True)


def descriptions(metrics: list[str]) -> dict[str, str]:
    return {m: (METRICS.find(m).description if METRICS.find(m) else "") for m in metrics}
