"""The attack x defence matrix: per pre-training objective, rows are attacks, columns are the
post-training defences (plus "none": the poisoned model before cleaning), and each cell is the
clean top-1 and ASR of the cleaned model a named policy picks, with Wilson intervals, marked a
success when ASR <= the threshold at no more than one point of accuracy lost.

A defence column is the set of `[clean]` defences a run turns on (SuFi, PAR, ...), else its
cleaning objective (mmcl+ssl is CleanCLIP, mmcl MMCL-only fine-tuning). The policy is the one a
defender without trigger knowledge can apply: each run's final epoch, and among runs of a cell
(a learning-rate sweep) the most accurate one.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from xspec.extend.registry import DEFENCES, defences_of
from xspec.reports.queries import frame
from xspec.reports.stats import wilson

POLICY = "final epoch; the most accurate run of the cell (no ASR knowledge)"
MAX_DROP = 0.01  # accuracy lost that still counts as a success

CELLS = """
WITH final AS (
    SELECT * FROM xr_eval
    QUALIFY row_number() OVER (PARTITION BY node_id ORDER BY epoch DESC) = 1
)
SELECT c.study, c.pretrain_objective, c.clean_objective, n.lineage,
    f.top1, f.top1_n, f.asr, f.asr_n,
    s.top1 AS start_top1, s.top1_n AS start_top1_n, s.asr AS start_asr, s.asr_n AS start_asr_n
FROM xr_clean c
JOIN xr_nodes n ON n.node_id = c.node_id AND n.study = c.study
LEFT JOIN final f ON f.node_id = c.node_id
LEFT JOIN final s ON s.node_id = coalesce(c.sp_id, c.select_id)
WHERE f.top1 IS NOT NULL
"""


def defence_of(lineage: dict, clean_objective: str) -> str:
    names = [d for d in DEFENCES.names()
             if any(k == f"clean.{d}" or k.startswith(f"clean.{d}.") for k in lineage)]
    return " + ".join(names) if names else f"{clean_objective} fine-tuning"


def pretrain_defence_of(lineage: dict) -> str:
    """The pre-training defences a run's model was trained with ("none" without one)."""
    names = [d.name for d in defences_of("pretrain")
             if any(k == f"pretrain.{d.name}" or k.startswith(f"pretrain.{d.name}.")
                    for k in lineage)]
    return "+".join(names) or "none"


def attack_of(lineage: dict) -> str:
    kind = lineage.get("poison.kind") or "none"
    return kind


def _cell(top1, top1_n, asr, asr_n, start_top1, threshold: float) -> dict:
    t_lo, t_hi = wilson(top1, top1_n)
    attacked = asr is not None and not pd.isna(asr)  # no ASR where the study has no attack
    a_lo, a_hi = wilson(asr, asr_n) if attacked else (math.nan, math.nan)
    ok = (asr is not None and not pd.isna(asr) and asr <= threshold
          and (start_top1 is None or pd.isna(start_top1) or start_top1 - top1 <= MAX_DROP))
    return {"top1": float(top1), "top1_pm": float((t_hi - t_lo) / 2),
            "asr": None if asr is None or pd.isna(asr) else float(asr),
            "asr_pm": None if pd.isna(a_hi) else float((a_hi - a_lo) / 2), "success": bool(ok)}


def matrices(con, asr_threshold: float) -> list[dict]:
    """One matrix per (study, pre-training objective); empty when no cleaning run finished or
    the study crosses fewer than two attacks or defences."""
    rows = frame(con, CELLS)
    if rows.empty:
        return []
    rows["lineage"] = rows["lineage"].map(json.loads)
    rows["attack"] = rows["lineage"].map(attack_of)
    rows["defence"] = [defence_of(lin, obj) for lin, obj in zip(rows["lineage"],
                                                                 rows["clean_objective"])]
    rows["pretrain_defence"] = rows["lineage"].map(pretrain_defence_of)
    out = []
    for (study, objective), group in rows.groupby(["study", "pretrain_objective"], sort=True):
        columns = _columns(group)
        attacks = sorted(group["attack"].unique())
        if len(attacks) < 2 and len(columns) < 3:
            continue
        table = [{"attack": attack, "cells": [
            _column_cell(group[group["attack"] == attack], column, asr_threshold)
            for column in columns]} for attack in attacks]
        out.append({"study": study, "objective": objective,
                    "defences": [label for label, _, _ in columns], "rows": table})
    return out


def _columns(group: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    """(label, pre-training defence, cleaning defence or None for the model before cleaning):
    "none", the cleaning defences, then per pre-training defence its model and its cleanings."""
    out = []
    for pre in sorted(group["pretrain_defence"].unique(), key=lambda p: (p != "none", p)):
        mine = group[group["pretrain_defence"] == pre]
        out.append(("none" if pre == "none" else f"{pre} (pre-training)", pre, None))
        out += [(d if pre == "none" else f"{pre} + {d}", pre, d)
                for d in sorted(mine["defence"].unique())]
    return out


def _column_cell(mine: pd.DataFrame, column, asr_threshold: float) -> dict | None:
    _, pre, defence = column
    runs = mine[mine["pretrain_defence"] == pre]
    if defence is None:  # the poisoned (or defended) pre-trained model before cleaning
        if runs.empty or pd.isna(runs.iloc[0]["start_top1"]):
            return None
        start = runs.iloc[0]
        return _cell(start["start_top1"], start["start_top1_n"], start["start_asr"],
                     start["start_asr_n"], None, asr_threshold)
    runs = runs[runs["defence"] == defence]
    if runs.empty:
        return None
    best = runs.sort_values("top1", ascending=False).iloc[0]
    return _cell(best["top1"], best["top1_n"], best["asr"], best["asr_n"], best["start_top1"],
                 asr_threshold)
