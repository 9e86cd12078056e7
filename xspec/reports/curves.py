"""Altair charts of training and of checkpoint selection: pre-training curves with the selected
checkpoint starred, loss curves per run, and the selection-policy dot plot."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from xspec.reports.charts import PCT, SPLIT_LINES, lr_color, to_spec, values, with_texts

STAR = ("M0,-1L0.2245,-0.309L0.9511,-0.309L0.3633,0.118L0.5878,0.809L0,0.382L-0.5878,0.809"
        "L-0.3633,0.118L-0.9511,-0.309L-0.2245,-0.309Z")
LOSS_ORDER = ["loss", "mmcl", "ssl", "l2_to_start", "deep_cluster"]


def _run_label(frame: pd.DataFrame, comparison: bool) -> pd.Series:
    label = frame["pretrain_objective"].astype(str) + frame["settings"].map(
        lambda s: f" · {s}" if s else "")
    return frame["study"].astype(str) + ": " + label if comparison else label


def _curve_panel(metric: str, title: str, color: alt.Color) -> alt.LayerChart:
    fraction = metric != "loss"
    axis = PCT if fraction else alt.Axis()
    x = alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1))
    y = alt.Y(f"{metric}:Q", title=title, axis=axis,
              scale=alt.Scale(domain=[0, 1]) if metric == "asr" else alt.Scale(zero=fraction))
    value = (alt.Tooltip(f"{metric}_text:N", title=f"{title} (95% CI)") if fraction
             else alt.Tooltip("loss:Q", title=title, format=".4f"))
    tips = [alt.Tooltip("run:N", title="run"), alt.Tooltip("epoch:Q"), value]
    layers = []
    curves = with_texts(alt.Chart(alt.NamedData(name="pretrain")))
    stars = with_texts(alt.Chart(alt.NamedData(name="selected")))
    if fraction:
        layers.append(curves.mark_area(opacity=0.15).encode(
            x=x, y=f"{metric}_lo:Q", y2=f"{metric}_hi:Q", fill=alt.Fill("run:N", legend=None),
            detail="node_id:N"))
    layers.append(curves.mark_line(point=alt.OverlayMarkDef(size=22)).encode(
        x=x, y=y, color=color, detail="node_id:N", tooltip=tips))
    layers.append(stars.mark_point(
        shape=STAR, size=260, filled=True, opacity=1, stroke="black", strokeWidth=0.8,
    ).encode(x=x, y=y, color=color, tooltip=[
        alt.Tooltip("run:N", title="run"), alt.Tooltip("policy:N", title="selected by"),
        alt.Tooltip("epoch:Q"), alt.Tooltip("top1_text:N", title="top-1 (95% CI)"),
        alt.Tooltip("asr_text:N", title="ASR (95% CI)")]))
    return alt.layer(*layers).properties(width=270, height=210, title=title)


def pretrain_chart(curves: pd.DataFrame, selected: pd.DataFrame,
                   comparison: bool = False) -> dict:
    """Top-1, ASR (with Wilson bands) and training loss per pre-training epoch, one colour per
    pre-training run; a star marks each checkpoint a select node picked."""
    curves = curves.copy()
    curves["run"] = _run_label(curves, comparison)
    stars = selected.merge(
        curves[["study", "node_id", "epoch", "run", "loss"]], on=["study", "node_id", "epoch"])
    stars["policy"] = stars["policy"] + stars["reference"].map(
        lambda r: f" ({r})" if isinstance(r, str) and r else "")
    keep = ["run", "node_id", "epoch", "top1", "asr", "loss", "top1_lo", "top1_hi", "asr_lo",
            "asr_hi"]
    datasets = {"pretrain": values(curves, keep), "selected": values(stars, [*keep, "policy"])}
    color = alt.Color("run:N", title="pre-training run", legend=alt.Legend(labelLimit=420))
    panels = [_curve_panel("top1", "zero-shot top-1 accuracy", color),
              _curve_panel("asr", "attack success rate", color)]
    if curves["loss"].notna().any():
        panels.append(_curve_panel("loss", "training loss", color))
    return to_spec(alt.hconcat(*panels).resolve_scale(color="shared"), datasets)


def loss_chart(losses: pd.DataFrame, comparison: bool = False,
               title: str = "loss term (training split, epoch mean)") -> dict:
    """Training losses per epoch: a column per loss term, a row per pre-training objective or
    objective pair (settings overlaid), a line per run coloured by its learning rate."""
    data = losses.copy()
    clean = data["kind"] == "clean"
    data["row"] = ("pre-training: " + data["pretrain_objective"].astype(str)).where(
        ~clean, "cleaning: " + data["pretrain_objective"].astype(str) + " → "
        + data["clean_objective"].astype(str))
    if comparison:
        data["row"] = data["study"].astype(str) + "\n" + data["row"]
    data["run"] = pd.factorize(data["study"].astype(str) + "/" + data["node_id"])[0]
    metrics = [m for m in LOSS_ORDER if m in set(data["metric"])]
    metrics += sorted(set(data["metric"]) - set(metrics))
    # Every (row, term) cell needs a row, or Vega-Lite shifts the cells of a sparse row.
    present = set(zip(data["row"], data["metric"]))
    empty = [{"row": row, "metric": metric} for row in dict.fromkeys(data["row"])
             for metric in metrics if (row, metric) not in present]
    data = pd.concat([data, pd.DataFrame(empty)], ignore_index=True)
    columns = ["row", "run", "name", "settings", "lr", "epoch", "metric", "value"]
    chart = alt.Chart(alt.NamedData(name="losses")).mark_line(strokeWidth=1.2, opacity=0.8)
    return to_spec(chart.encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=lr_color(data["lr"].dropna()),
        detail="run:N",
        tooltip=[alt.Tooltip("name:N", title="run"), alt.Tooltip("settings:N", title="settings"),
                 alt.Tooltip("lr:Q", title="learning rate", format=".2~e"),
                 alt.Tooltip("metric:N", title="loss term"), alt.Tooltip("epoch:Q"),
                 alt.Tooltip("value:Q", title="value", format=".4f")],
    ).properties(width=190, height=130).facet(
        row=alt.Row("row:N", title=None, sort=list(dict.fromkeys(data["row"])), header=alt.Header(
            labelAngle=0, labelAlign="left", labelLimit=220, labelExpr=SPLIT_LINES)),
        column=alt.Column("metric:N", title=title,
                          sort=metrics),
    ).resolve_scale(y="independent"), {"losses": values(data, columns)})


def policy_frame(policies: pd.DataFrame, comparison: bool) -> pd.DataFrame:
    """Long format for `policy_chart`: a row per panel, policy and metric (top-1 / ASR)."""
    rows = []
    for _, p in policies.iterrows():
        panel = f"{p['pretrain_objective']} → {p['clean_objective']}"
        if p.get("settings"):
            panel = f"{panel}\n{p['settings']}"
        if comparison:
            panel = f"{p['study']}\n{panel}"
        for metric in ("top1", "asr"):
            rows.append({
                "panel": panel, "policy": p["label"], "metric": metric,
                "value": p[metric], "lo": p.get(f"{metric}_lo"), "hi": p.get(f"{metric}_hi"),
                "min": p[f"{metric}_min"], "median": p[f"{metric}_median"],
                "max": p[f"{metric}_max"], "runs": p["runs_picked"],
            })
    return pd.DataFrame(rows)


def _policy_column(data: pd.DataFrame, metric: str, title: str, order: list[str],
                   asr_threshold: float | None, first: bool) -> alt.FacetChart:
    """One metric's dot plot, a row per objective pair; the x scale spans the values drawn."""
    shown = data[data["metric"] == metric][["lo", "hi", "min", "max", "value"]]
    low, high = shown.min().min(), shown.max().max()
    domain = [0, 1] if metric == "asr" or pd.isna(low) else [
        max(0.0, math.floor((low - 0.02) * 20) / 20), min(1.0, math.ceil((high + 0.02) * 20) / 20)]
    x = alt.X("min:Q", title=title, axis=PCT, scale=alt.Scale(domain=domain, nice=False))
    y = alt.Y("policy:N", title=None, sort=order,
              axis=alt.Axis(labelLimit=260, labels=first, ticks=first))
    spread = alt.Chart().mark_rule(color="#f4a582", strokeWidth=9, opacity=0.85).encode(
        x=x, x2="max:Q", y=y,
        tooltip=[alt.Tooltip("runs:Q", title="runs with a pick"),
                 alt.Tooltip("min:Q", title="min across runs", format=".2%"),
                 alt.Tooltip("median:Q", title="median across runs", format=".2%"),
                 alt.Tooltip("max:Q", title="max across runs", format=".2%")])
    median = alt.Chart().mark_tick(color="#b2182b", thickness=2, size=14).encode(
        x="median:Q", y=y)
    interval = alt.Chart().mark_rule(color="black", strokeWidth=1.5).encode(
        x="lo:Q", x2="hi:Q", y=y)
    pick = alt.Chart().mark_circle(color="black", size=55, opacity=1).encode(
        x="value:Q", y=y,
        tooltip=[alt.Tooltip("policy:N"),
                 alt.Tooltip("value:Q", title="picked checkpoint", format=".2%"),
                 alt.Tooltip("lo:Q", title="95% CI low", format=".2%"),
                 alt.Tooltip("hi:Q", title="95% CI high", format=".2%")])
    layers = [spread, median, interval, pick]
    if asr_threshold is not None:
        layers.insert(2, alt.Chart().mark_rule(color="#2a7a2a", strokeDash=[4, 3]).encode(
            x=alt.datum(asr_threshold)))
    chart = alt.layer(*layers).transform_filter(alt.datum.metric == metric)
    return chart.properties(width=330, height=22 * len(order)).facet(
        row=alt.Row("panel:N", title=None, header=alt.Header(
            labelAngle=0, labelAlign="left", labelLimit=240, labels=first,
            labelExpr=SPLIT_LINES)),
        data=alt.NamedData(name="policies"),
    )


def policy_chart(policies: pd.DataFrame, asr_threshold: float,
                 comparison: bool = False) -> dict:
    """Per objective pair and policy: the picked checkpoint's top-1 and ASR (black dot, Wilson
    95 % bar) over the spread of the per-run picks across runs (orange bar min–max, tick
    median); the dashed line is the ASR threshold."""
    data = policy_frame(policies, comparison)
    order = list(dict.fromkeys(policies["label"]))
    chart = alt.hconcat(
        _policy_column(data, "top1", "zero-shot top-1 accuracy", order, None, True),
        _policy_column(data, "asr", "attack success rate", order, asr_threshold, False),
    )
    return to_spec(chart, {"policies": values(data, list(data.columns))})
