"""Altair charts of cleaning: the Pareto scatter and the trajectories.

Frames come from `xspec.reports.chartdata` (bounded, with Wilson bounds `<c>_lo`/`<c>_hi`).
Accuracy and ASR are fractions, drawn as percentages. Each chart is one faceted spec over one
dataset (cheap to build whatever the number of panels); `comparison=True` adds the study to
panel and series labels.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

PANEL = 260
PCT = alt.Axis(format=".0%")
LR_FORMAT = "format(datum.value, '.2~e')"
LR_SCALE = alt.Scale(type="log", scheme="viridis")
LR_LEGEND = alt.Legend(format=".2~e", title="learning rate")
START_COLOR = "#d62728"
MAX_SHAPES = 8
SPLIT_LINES = "split(datum.value, '\\n')"  # header labels: one line per '\n'


def to_spec(chart: alt.TopLevelMixin, datasets: dict[str, list] | None = None) -> dict:
    """The chart's Vega-Lite dict, with the rows of its named datasets put in (altair would
    validate every row of inline data, which takes seconds for a few thousand rows)."""
    spec = chart.to_dict(validate=False)
    spec.pop("$schema", None)
    if datasets:
        spec.setdefault("datasets", {}).update(datasets)
    return spec


def values(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows for a dataset, compact: only `columns`, floats to 6 significant digits, no nulls."""
    rows = []
    for record in frame.reindex(columns=columns).to_dict("records"):
        row = {}
        for key, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if isinstance(value, float):
                value = float(f"{value:.6g}")
            elif hasattr(value, "item"):
                value = value.item()
            row[key] = value
        rows.append(row)
    return rows


def ci_text(field: str) -> str:
    """Vega expression: '74.20% [71.39, 76.84]' from `field` and its Wilson bounds."""
    lo, hi = f"datum.{field}_lo", f"datum.{field}_hi"
    return (f"format(datum.{field}, '.2%') + (isValid({lo}) ? ' [' + format(100 * {lo}, '.2f')"
            f" + ', ' + format(100 * {hi}, '.2f') + ']' : '')")


def with_texts(chart):
    """Adds the `top1_text` / `asr_text` tooltip fields, computed in the browser."""
    return chart.transform_calculate(top1_text=ci_text("top1"), asr_text=ci_text("asr"))


def pair_label(frame: pd.DataFrame, comparison: bool, prefix: str = "") -> pd.Series:
    """'mmcl → mmcl+ssl' (the study first in a comparison)."""
    label = (prefix + frame["pretrain_objective"].astype(str) + " → "
             + frame["clean_objective"].astype(str))
    return frame["study"].astype(str) + " · " + label if comparison else label


def tooltip() -> list:
    return [
        alt.Tooltip("name:N", title="run"),
        alt.Tooltip("settings:N", title="settings"),
        alt.Tooltip("lr:Q", title="learning rate", format=".2~e"),
        alt.Tooltip("epoch:Q", title="epoch"),
        alt.Tooltip("top1_text:N", title="top-1 (95% CI)"),
        alt.Tooltip("asr_text:N", title="ASR (95% CI)"),
    ]


def lr_color(values: pd.Series) -> alt.Color:
    """Learning rate colour: one viridis step per rate for a grid of up to 12 rates, else a
    continuous log scale."""
    rates = sorted(float(v) for v in values.dropna().unique())
    if len(rates) <= 12:
        return alt.Color("lr:O", scale=alt.Scale(scheme="viridis", domain=rates),
                         legend=alt.Legend(title="learning rate", labelExpr=LR_FORMAT))
    return alt.Color("lr:Q", scale=LR_SCALE, legend=LR_LEGEND)


def accuracy_scale(*frames: pd.DataFrame) -> alt.Scale:
    """Shared by all panels: from 5 points below the lowest accuracy drawn (interval included)
    to 5 above the highest, rounded out to multiples of 10 %."""
    lows = [f["top1_lo"].min() for f in frames if len(f)]
    highs = [f["top1_hi"].max() for f in frames if len(f)]
    if not lows:
        return alt.Scale(domain=[0, 1])
    low = max(0.0, math.floor((min(lows) - 0.05) * 10) / 10)
    high = min(1.0, math.ceil((max(highs) + 0.05) * 10) / 10)
    return alt.Scale(domain=[low, high], nice=False)


PARETO_COLUMNS = ["panel", "role", "name", "settings", "lr", "epoch", "top1", "asr", "asr2",
                  "top1_lo", "top1_hi", "asr_lo", "asr_hi"]


def _pareto_frame(points: pd.DataFrame, starts: pd.DataFrame, asr_threshold: float,
                  comparison: bool) -> pd.DataFrame:
    """One frame for all panels: role = point | front | start | region (one row per panel)."""
    points["panel"], starts["panel"] = panel_label(points, comparison), panel_label(starts,
                                                                                    comparison)
    region = pd.DataFrame({"panel": points["panel"].unique(), "role": "region", "asr": 0.0,
                           "asr2": asr_threshold})
    parts = [points.assign(role=points["front"].map({True: "front", False: "point"})),
             starts[starts["panel"].isin(region["panel"])].assign(role="start"), region]
    return pd.concat(parts, ignore_index=True)


def panel_label(frame: pd.DataFrame, comparison: bool) -> pd.Series:
    """'pre-trained with mmcl → cleaned with mmcl+ssl', after the study and a line break in a
    comparison (headers split labels at line breaks)."""
    label = ("pre-trained with " + frame["pretrain_objective"].astype(str) + " → cleaned with "
             + frame["clean_objective"].astype(str))
    return frame["study"].astype(str) + "\n" + label if comparison else label


def _role(role: str):
    return alt.datum.role == role


def _error_bars(x, y, color: str, role: str) -> list[alt.Chart]:
    base = alt.Chart().transform_filter(_role(role))
    return [
        base.mark_rule(color=color, opacity=0.7).encode(x=x, y="top1_lo:Q", y2="top1_hi:Q"),
        base.mark_rule(color=color, opacity=0.7).encode(x="asr_lo:Q", x2="asr_hi:Q", y=y),
    ]


def pareto_chart(points: pd.DataFrame, starts: pd.DataFrame, asr_threshold: float,
                 comparison: bool = False, columns: int = 3) -> dict:
    """Accuracy vs ASR of every cleaning epoch; one panel per study and objective pair.

    Colour: learning rate; shape: the other varying settings (when 2 to 8 of them); black step
    line and rings: the Pareto front (highest accuracy reachable at a given ASR) with Wilson
    95 % error bars; red diamond: the original model; green band: ASR ≤ threshold.
    """
    data = _pareto_frame(points.copy(), starts.copy(), asr_threshold, comparison)
    x = alt.X("asr:Q", title="attack success rate", axis=PCT, scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("top1:Q", title="zero-shot top-1 accuracy", axis=PCT,
              scale=accuracy_scale(points, starts))
    region = alt.Chart().mark_rect(color="#2ca02c", opacity=0.12).encode(x=x, x2="asr2:Q")
    label = alt.Chart().mark_text(align="left", baseline="top", dx=3, dy=3, color="#2a7a2a",
                                  fontSize=10, text=f"ASR ≤ {asr_threshold * 100:g}%").encode(
        x=x, y=alt.value(0))
    encoding = {"x": x, "y": y, "tooltip": tooltip(), "color": lr_color(points["lr"])}
    if 1 < points["settings"].nunique() <= MAX_SHAPES:
        encoding["shape"] = alt.Shape("settings:N", title="setting",
                                      legend=alt.Legend(labelLimit=360))
    cloud = alt.Chart().mark_point(filled=True, size=40, opacity=0.8).encode(**encoding)
    line = alt.Chart().mark_line(interpolate="step-after", color="black",
                                 strokeWidth=1.4).encode(x=x, y=y, order="asr:Q")
    rings = alt.Chart().mark_point(size=80, color="black", strokeWidth=1.2).encode(
        x=x, y=y, tooltip=tooltip())
    start = alt.Chart().mark_point(shape="diamond", size=200, filled=True, color=START_COLOR,
                                   stroke="black", strokeWidth=1.2, opacity=1).encode(
        x=x, y=y, tooltip=[alt.Tooltip("name:N", title="original model"),
                           alt.Tooltip("settings:N", title="pre-training settings"),
                           alt.Tooltip("epoch:Q", title="epoch"),
                           alt.Tooltip("top1_text:N", title="top-1 (95% CI)"),
                           alt.Tooltip("asr_text:N", title="ASR (95% CI)")])
    layers = [region.transform_filter(_role("region")), label.transform_filter(_role("region")),
              cloud.transform_filter("datum.role == 'point' || datum.role == 'front'"),
              line.transform_filter(_role("front")),
              *_error_bars(x, y, "#333", "front"), rings.transform_filter(_role("front")),
              *_error_bars(x, y, START_COLOR, "start"), start.transform_filter(_role("start"))]
    chart = alt.layer(*layers, data=alt.NamedData(name="pareto"))
    return to_spec(with_texts(chart.properties(width=PANEL, height=PANEL)).facet(
        facet=alt.Facet("panel:N", title=None, sort=list(dict.fromkeys(data["panel"])),
                        header=alt.Header(labelFontSize=12, labelFontWeight="bold",
                                          labelLimit=PANEL + 80,
                                          labelExpr=SPLIT_LINES)),
        columns=columns,
    ), {"pareto": values(data, PARETO_COLUMNS)})


TRAJECTORY_COLUMNS = ["series", "run", "name", "settings", "lr", "epoch", "top1", "asr",
                      "top1_lo", "top1_hi", "asr_lo", "asr_hi"]


def trajectory_chart(points: pd.DataFrame, comparison: bool = False,
                     columns: int = 4) -> dict:
    """Small multiples per learning rate: each cleaning run's accuracy vs ASR from its starting
    model (epoch 0) on, points growing with the epoch, coloured by objective pair."""
    data = points.copy()
    data["series"] = pair_label(data, comparison)
    data["run"] = pd.factorize(data["study"].astype(str) + "/" + data["node_id"])[0]
    scheme = "tableau10" if data["series"].nunique() <= 10 else "tableau20"
    x = alt.X("asr:Q", title="attack success rate", axis=PCT, scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("top1:Q", title="zero-shot top-1 accuracy", axis=PCT)
    color = alt.Color("series:N", title="pre-training → cleaning objective",
                      scale=alt.Scale(scheme=scheme),
                      legend=alt.Legend(orient="bottom", columns=2, labelLimit=420))
    base = alt.Chart().encode(x=x, y=y, color=color, detail="run:N")
    line = base.mark_line(opacity=0.55, strokeWidth=1.2).encode(order="epoch:Q")
    dots = base.mark_circle(opacity=0.9).encode(
        size=alt.Size("epoch:Q", title="epoch", scale=alt.Scale(range=[12, 140]),
                      legend=alt.Legend(orient="bottom")),
        tooltip=tooltip(),
    )
    chart = alt.layer(line, dots, data=alt.NamedData(name="trajectories"))
    return to_spec(with_texts(chart.properties(width=200, height=170)).facet(
        facet=alt.Facet("lr:O", title="learning rate", header=alt.Header(
            labelExpr="'lr = ' + " + LR_FORMAT)),
        columns=columns,
    ), {"trajectories": values(data, TRAJECTORY_COLUMNS)})
