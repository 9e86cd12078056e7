"""What a report page shows: its tables (with Wilson intervals and settings columns), the tables
pooled across seeds, and its charts as Vega-Lite specs. `html.py` renders and writes them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xspec.reports import (
    baselines, chartdata, charts, curves, decree, evalsets, load, matrix, metrics, policies,
    provenance, queries,
)
from xspec.reports.stats import pool_seeds, with_wilson


@dataclass(frozen=True)
class ChartBlock:
    id: str
    title: str
    caption: str
    spec: dict
    static: bool = False


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN/NaT turned into None, for the template."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _with_settings(frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Adds `setting_values`: the value of each settings column, in `labels` order."""
    out = frame.copy()
    parsed = [json.loads(s) if isinstance(s, str) else {} for s in out.get("settings_json", [])]
    out["setting_values"] = [[values.get(label) for label in labels] for values in parsed]
    return out


def _thinned(data: pd.DataFrame, what: str) -> str:
    shown, total = data.attrs.get("shown"), data.attrs.get("total")
    if shown is None or shown >= total:
        return ""
    return f" For size, {shown:,} of {total:,} {what} are drawn (a fixed hash-based subset)."


def _chart_blocks(con, asr_threshold: float, comparison: bool,
                  policy_table: pd.DataFrame) -> list[ChartBlock]:
    threshold = f"{100 * asr_threshold:g}%"
    blocks = []
    points = chartdata.pareto_points(con)
    if len(points):
        starts = chartdata.pareto_starts(con)
        blocks.append(ChartBlock(
            "chart-pareto", "Accuracy vs ASR after every cleaning epoch",
            "Every cleaning epoch (≥ 1) of every run, one panel per pre-training and cleaning "
            "objective. Colour: learning rate; shape: the other varying settings, if any. Black "
            "step line and rings: the Pareto front (highest accuracy reachable at a given ASR), "
            "with Wilson 95 % intervals. Red diamond: the original (selected) model. Green band: "
            f"ASR ≤ {threshold}. Hover a point for its run, settings and epoch."
            + _thinned(points, "cleaning epochs (every front point kept)"),
            (charts.pareto_chart(points, starts, asr_threshold, comparison)), static=True))
    if len(policy_table) and policy_table["runs_picked"].notna().any():
        blocks.append(ChartBlock(
            "chart-policies", "Selection policies",
            "The checkpoint each policy picks (black dot, Wilson 95 % interval) and the spread "
            "of the per-run picks across learning rates (orange: min–max, red tick: median). "
            f"Dashed line: ASR = {threshold}.",
            (curves.policy_chart(policy_table, asr_threshold, comparison)), static=True))
    if len(points):
        runs = chartdata.trajectories(con)
        blocks.append(ChartBlock(
            "chart-trajectories", "Cleaning trajectories by learning rate",
            "One panel per learning rate; each line is one cleaning run from its starting model "
            "(epoch 0, smallest dot), dots growing with the epoch. Colour: objective pair and "
            "setting." + _thinned(runs, "runs"),
            (charts.trajectory_chart(runs, comparison))))
    pre, selected = chartdata.pretrain_curves(con)
    if len(pre):
        blocks.append(ChartBlock(
            "chart-pretrain", "Pre-training curves",
            "Zero-shot top-1 accuracy and ASR (bands: Wilson 95 % intervals) and training loss "
            "per pre-training epoch. Stars: the checkpoint the selection policy picked, from "
            "which cleaning starts.",
            (curves.pretrain_chart(pre, selected, comparison)), static=True))
    extra = metrics.curves(con)
    if len(extra):
        blocks.append(ChartBlock(
            "chart-metrics", "Other evaluation metrics per cleaning epoch",
            "The registered evaluation metrics besides top-1 and ASR (evaluate.metrics), per "
            "cleaning run and epoch (0 = the starting model); one line per run, coloured by its "
            "learning rate.",
            curves.loss_chart(extra, comparison, title="evaluation metric (split eval)")))
    losses = chartdata.loss_curves(con)
    if len(losses):
        blocks.append(ChartBlock(
            "chart-losses", "Training losses per run",
            "Epoch means of each loss term on the training split; one line per run, coloured by "
            "its learning rate (pre-training rows: the pre-training learning rate)."
            + _thinned(losses, "runs"),
            (curves.loss_chart(losses, comparison))))
    return blocks


def _pooled(info: pd.DataFrame, table3: pd.DataFrame, table2: pd.DataFrame,
            policy_table: pd.DataFrame) -> dict | None:
    """Tables pooled over studies that differ only in their seed; None without such studies."""
    families = {}
    for family, group in info.groupby("family", sort=False):
        if group["seed"].nunique() >= 2:
            families[family] = ", ".join(group["study"])
    if not families:
        return None
    family_of = {s: families.get(f) for s, f in zip(info["study"], info["family"])}
    seed_of = dict(zip(info["study"], info["seed"]))

    def pool(frame: pd.DataFrame, keys: list[str], values: list[str]) -> list[dict]:
        frame = frame.assign(family=frame["study"].map(family_of), seed=frame["study"].map(seed_of))
        frame = frame[frame["family"].notna()]
        return records(pool_seeds(frame, ["family", *keys], values)) if len(frame) else []

    return {
        "table3": pool(table3, ["pretrain_objective", "settings", "policy"], ["top1", "asr"]),
        "table2": pool(table2, ["pretrain_objective", "clean_objective", "settings"],
                       ["original_top1", "original_asr", "best_top1", "best_asr",
                        "relative_change_pct"]),
        "policies": pool(policy_table.assign(order=policy_table["policy"].map(
            policies.order().index)),
            ["pretrain_objective", "clean_objective", "settings", "order", "label"],
            ["top1", "asr"]),
    }


def _run_links(runs: pd.DataFrame, workspace: Path, out_dir: Path) -> pd.DataFrame:
    runs = runs.copy()
    base = os.path.relpath(workspace / "runs", out_dir.resolve())
    runs["log"] = [f"{base}/{run}/log.txt".replace(os.sep, "/") for run in runs["run_dir"]]
    return runs


def context(con, studies: list[str], asr_threshold: float, comparison: bool,
            workspace: Path, out_dir: Path) -> dict:
    """Everything the report template shows, for `studies` (already `load`ed into `con`)."""
    info = queries.studies(con, studies)
    clean_labels, pretrain_labels = load.varying(con, "clean"), load.varying(con, "pretrain")
    table3 = with_wilson(queries.table3(con))
    table2 = with_wilson(with_wilson(queries.table2(con, asr_threshold), prefix="original_"),
                         prefix="best_")
    policy_table = with_wilson(policies.selection_policies(con, asr_threshold))
    sets = evalsets.section(con, asr_threshold)
    set_charts = evalsets.pareto_blocks(con, sets["sets"], asr_threshold, comparison,
                                        ChartBlock) if sets else []
    extra = metrics.curves(con)
    metric_names, metric_table = metrics.names(extra), metrics.table(extra)
    detected = baselines.detection(con)
    return {
        "title": ", ".join(studies),
        "studies": _with_notes(records(info)),
        "comparison": comparison,
        "asr_threshold": asr_threshold,
        "counts": records(queries.node_counts(con)),
        "clean_labels": clean_labels,
        "pretrain_labels": pretrain_labels,
        "table3": records(_with_settings(table3, pretrain_labels)),
        "shrink_perturb": records(with_wilson(queries.shrink_perturb(con))),
        "table2": records(_with_settings(table2, clean_labels)),
        "table2_incomplete": bool((table2["runs_done"] != table2["runs"]).any()),
        "policies": records(policy_table),
        "metric_names": metric_names,
        "metric_descriptions": metrics.descriptions(metric_names),
        "metrics_table": records(metric_table) if len(metric_table) else [],
        "pooled": _pooled(info, table3, table2, policy_table) if comparison else None,
        "runs": records(_run_links(queries.run_table(con), workspace, out_dir)),
        "charts": _chart_blocks(con, asr_threshold, comparison, policy_table) + set_charts
        + _detection_blocks(detected, workspace),
        "eval_sets": sets,
        "matrix": matrix.matrices(con, asr_threshold),
        "matrix_policy": matrix.POLICY,
        "provenance": provenance.section(con),
        "pretrain_defences": records(baselines.pretrain_defences(con, table3)),
        "detection": records(detected),
        "decree": decree.section(con, asr_threshold),
    }


def _with_notes(studies: list[dict]) -> list[dict]:
    """Each study's `notes`: [study] notes and each [[variants]] table's (`xspec.spec.notes`)."""
    for study in studies:
        study["notes"] = json.loads(study.pop("notes_json", None) or "[]")
    return studies


def _detection_blocks(detected: pd.DataFrame, workspace: Path) -> list[ChartBlock]:
    points = baselines.roc_points(workspace, detected) if len(detected) else pd.DataFrame()
    if not len(points):
        return []
    return [ChartBlock(
        "chart-roc", "ROC curves of the poisoned-pair detectors",
        "Every training pair scored by each detector (higher: more likely poisoned) against the "
        "poison manifest; one panel per pre-trained model (objective · pre-training defence). "
        "Dashed: chance.", baselines.roc_chart(points))]
