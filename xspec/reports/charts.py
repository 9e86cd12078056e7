"""Altair charts built from the frames of `xspec.reports.queries`.

Accuracy and ASR are fractions in the frames and shown as percentages on the axes. Each chart
embeds only the columns it draws, so reports stay small without lifting altair's row limit.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

PANEL = 300
_PCT = alt.Axis(format=".0%")
_LR_SCALE = alt.Scale(type="log", scheme="viridis")
_POINT_COLUMNS = ["node_id", "name", "pretrain_objective", "clean_objective", "lr", "epoch",
                  "top1", "asr"]
_TOOLTIP = [
    alt.Tooltip("name:N", title="run"),
    alt.Tooltip("clean_objective:N", title="cleaning objective"),
    alt.Tooltip("lr:Q", title="learning rate", format=".1e"),
    alt.Tooltip("epoch:Q", title="epoch"),
    alt.Tooltip("top1:Q", title="top-1", format=".2%"),
    alt.Tooltip("asr:Q", title="ASR", format=".2%"),
    alt.Tooltip("node_id:N", title="node"),
]


def _objectives(frame: pd.DataFrame, column: str) -> list[str]:
    return sorted(frame[column].dropna().unique())


def _accuracy_scale(points: pd.DataFrame, starts: pd.DataFrame) -> alt.Scale:
    """From 0 to 10% above the best accuracy shown, so panels compare on one scale."""
    top = float(pd.concat([points["top1"], starts["top1"]]).max())
    return alt.Scale(domain=[0, min(1.0, 1.1 * top) if top > 0 else 1.0], nice=False)


def _success_region(asr_threshold: float) -> alt.LayerChart:
    region = pd.DataFrame({"x": [0.0], "x2": [asr_threshold],
                           "label": [f"ASR ≤ {asr_threshold * 100:g}%"]})
    base = alt.Chart(region)
    rect = base.mark_rect(color="#2ca02c", opacity=0.12).encode(x="x:Q", x2="x2:Q")
    text = base.mark_text(align="left", baseline="top", dx=3, dy=3, color="#2ca02c",
                          fontSize=10).encode(x="x:Q", y=alt.value(0), text="label:N")
    return alt.layer(rect, text)


def _pareto_panel(points: pd.DataFrame, starts: pd.DataFrame, objective: str,
                  asr_threshold: float, y_scale: alt.Scale) -> alt.LayerChart:
    x = alt.X("asr:Q", title="attack success rate", axis=_PCT, scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("top1:Q", title="top-1 zero-shot accuracy", axis=_PCT, scale=y_scale)
    cleaned = alt.Chart(points[points["epoch"] >= 1][_POINT_COLUMNS]).mark_point(
        filled=True, size=40, opacity=0.8
    ).encode(
        x=x, y=y,
        color=alt.Color("lr:Q", title="learning rate", scale=_LR_SCALE,
                        legend=alt.Legend(format=".0e")),
        shape=alt.Shape("clean_objective:N", title="cleaning objective"),
        tooltip=_TOOLTIP,
    )
    start = alt.Chart(starts[["objective", "top1", "asr", "node_id"]]).mark_point(
        shape="diamond", size=300, filled=True, color="#d62728", stroke="black", strokeWidth=1.5
    ).encode(
        x=x, y=y,
        tooltip=[alt.Tooltip("objective:N", title="starting model"),
                 alt.Tooltip("top1:Q", title="top-1", format=".2%"),
                 alt.Tooltip("asr:Q", title="ASR", format=".2%"),
                 alt.Tooltip("node_id:N", title="node")],
    )
    return alt.layer(_success_region(asr_threshold), cleaned, start).properties(
        width=PANEL, height=PANEL, title=f"pre-trained with {objective}"
    )


def pareto_chart(points: pd.DataFrame, starts: pd.DataFrame,
                 asr_threshold: float) -> alt.HConcatChart:
    """Accuracy vs ASR of every cleaning epoch, one panel per pre-training objective.

    Colour is the learning rate (log scale), shape the cleaning objective; the red diamond is the
    starting model and the shaded band the success region (ASR at most the threshold).
    """
    y_scale = _accuracy_scale(points, starts)
    panels = [
        _pareto_panel(points[points["pretrain_objective"] == objective],
                      starts[starts["objective"] == objective], objective, asr_threshold, y_scale)
        for objective in _objectives(points, "pretrain_objective")
    ]
    return alt.hconcat(*panels).resolve_scale(color="shared", shape="shared")


def trajectory_chart(points: pd.DataFrame) -> alt.FacetChart:
    """Per cleaning run, accuracy vs ASR from epoch 0 on; points grow with the epoch.

    Columns are pre-training objectives, rows cleaning objectives, colour the learning rate.
    """
    x = alt.X("asr:Q", title="attack success rate", axis=_PCT, scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("top1:Q", title="top-1 zero-shot accuracy", axis=_PCT)
    stroke = alt.Stroke("lr:Q", title="learning rate", scale=_LR_SCALE,
                        legend=alt.Legend(format=".0e"))
    base = alt.Chart().encode(x=x, y=y, detail="node_id:N")
    line = base.mark_line(opacity=0.6, strokeWidth=1.2).encode(stroke=stroke, order="epoch:Q")
    dots = base.mark_circle(opacity=0.9).encode(
        fill=alt.Fill("lr:Q", scale=_LR_SCALE, legend=None),
        size=alt.Size("epoch:Q", title="epoch", scale=alt.Scale(range=[15, 150])),
        tooltip=_TOOLTIP,
    )
    return alt.layer(line, dots, data=points[_POINT_COLUMNS]).properties(
        width=PANEL, height=220
    ).facet(
        column=alt.Column("pretrain_objective:N", title="pre-training objective"),
        row=alt.Row("clean_objective:N", title="cleaning objective"),
    )


def _curve_panel(curves: pd.DataFrame, metric: str, title: str, fraction: bool) -> alt.Chart:
    axis = _PCT if fraction else alt.Axis()
    return alt.Chart(curves[curves["metric"] == metric]).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=title, axis=axis),
        color=alt.Color("objective:N", title="pre-training objective"),
        detail="node_id:N",
        tooltip=[alt.Tooltip("name:N", title="run"), alt.Tooltip("epoch:Q"),
                 alt.Tooltip("value:Q", title=title, format=".2%" if fraction else ".4f")],
    ).properties(width=PANEL, height=200, title=title)


def pretrain_curve_chart(curves: pd.DataFrame) -> alt.HConcatChart:
    """Pre-training top-1 accuracy, ASR and training loss per epoch, coloured by objective."""
    columns = curves[["node_id", "name", "objective", "epoch", "metric", "value"]]
    return alt.hconcat(
        _curve_panel(columns, "top1", "top-1 zero-shot accuracy", fraction=True),
        _curve_panel(columns, "asr", "attack success rate", fraction=True),
        _curve_panel(columns, "loss", "training loss", fraction=False),
    ).resolve_scale(color="shared")
