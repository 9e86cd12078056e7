"""A small synthetic study written straight into DuckDB, shaped like what `ingest` writes.

poison ─▶ pretrain × {mmcl, mmcl+ssl} ─▶ select ─▶ clean × {mmcl, mmcl+ssl} × 5 rates;
plus an ablation (clean.poisons = 10 for mmcl → mmcl+ssl), a shrink_perturb node under the
mmcl+ssl select node with two cleaning runs from it, and a failed and a pending mmcl → mmcl run.
Test files load this module by path (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pandas as pd

EVIL = "<script>alert(1)</script>"
STUDY = f"cc6m {EVIL}"
LRS = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4]
EPOCHS = 6
EVAL_N = 50_000
ASR_N = 49_950
STARTS = {"mmcl": (0.2376, 0.995), "mmcl+ssl": (0.2386, 0.998)}
SP_LRS = [1e-5, 1e-4]
NODE_COLUMNS = ["study", "id", "kind", "name", "config", "deps", "lineage", "status", "error",
                "updated"]
METRIC_COLUMNS = ["node_id", "epoch", "split", "metric", "value", "n", "step"]


def cleaning_curve(pre: str, cln: str, lr: float, epoch: int, shift: float = 0.0,
                   poisons: int = 0) -> tuple[float, float]:
    """(top1, asr): mmcl models clean well with mmcl+ssl, mmcl+ssl ones lose accuracy first."""
    top1, asr = STARTS[pre]
    strength = math.log10(lr / LRS[0]) / 2 + 0.3 - poisons / 40
    if cln == "mmcl":
        return top1 * (1 + 0.01 * math.sin(epoch + lr * 1e6)) + shift, asr * (1 - 0.01 * epoch)
    decay = math.exp(-strength * epoch * (1.0 if pre == "mmcl" else 0.45))
    keep = 1.0 if pre == "mmcl" else 0.5 + 0.5 * decay
    return top1 * keep * (1 + 0.004 * math.cos(3 * epoch + lr * 1e5)) + shift, asr * decay


def eval_rows(node: str, epoch: int, top1: float, asr: float, split: str = "eval",
              step: int | None = None) -> list[tuple]:
    return [(node, epoch, split, "top1", top1, EVAL_N, step),
            (node, epoch, split, "top5", min(1.0, 2.1 * top1), EVAL_N, step),
            (node, epoch, split, "asr", asr, ASR_N, step)]


def train_rows(node: str, epoch: int, scale: float, terms=("loss", "mmcl", "ssl")) -> list:
    """Training losses; mmcl falls then rises again after epoch 3 (overfitting the clean set)."""
    mmcl = scale * (2.0 + 0.1 * (epoch - 3) ** 2)
    values = {"loss": mmcl + 1.0, "mmcl": mmcl, "ssl": 1.0 / epoch}
    return [(node, epoch, "train", term, values[term], 100, None) for term in terms]


def _pretrain_rows(node: str, pre: str, epochs: int) -> list[tuple]:
    top1, asr = STARTS[pre]
    rows = []
    for epoch in range(1, epochs + 1):
        frac = epoch / epochs
        speed = 1.0 if pre == "mmcl" else 1.6
        rows += eval_rows(node, epoch, top1 * (1 - 0.7 * (1 - frac) ** speed),
                          min(0.999, asr * frac ** (0.2 * speed)))
        terms = ("loss", "mmcl") if pre == "mmcl" else ("loss", "mmcl", "ssl")
        rows += train_rows(node, epoch, 1.0 + 1 / epoch, terms)
    return rows


def _node(study: str, node: str, kind: str, name: str, lineage: dict, deps: list[str],
          status: str = "done", error: str | None = None) -> tuple:
    return (study, node, kind, name, json.dumps({}), json.dumps(deps), json.dumps(lineage),
            status, error, None)


def _clean(study, node, name, lineage, deps, pre, cln, lr, shift, poisons=0):
    nodes = [_node(study, node, "clean", name, lineage, deps)]
    metrics = eval_rows(node, 0, *STARTS[pre])
    for epoch in range(1, EPOCHS + 1):
        metrics += eval_rows(node, epoch, *cleaning_curve(pre, cln, lr, epoch, shift, poisons))
        metrics += train_rows(node, epoch, 1.0 + lr * 1e4)
    return nodes, metrics


def _shrink_perturb(study: str, s: str, seed: int, sel_lin: dict, deps: list[str],
                    shift: float) -> tuple[list, list]:
    """A shrink_perturb node under the mmcl+ssl select node and two cleaning runs from it."""
    sp_id = f"shrink_perturb-{s}"
    sp_lin = {**sel_lin, "shrink_perturb.shrink": [0.5, 1.0],
              "shrink_perturb.perturb": [0.0, 0.01, 0.1],
              "shrink_perturb.noise": "gaussian", "shrink_perturb.asr_threshold": 0.5,
              "shrink_perturb.seed": seed}
    nodes = [_node(study, sp_id, "shrink_perturb", "shrink_perturb", sp_lin, deps[:1])]
    metrics = []
    for k in range(6):
        metrics += eval_rows(sp_id, 0, 0.20 - 0.01 * k, 0.9 - 0.1 * k, "candidate", k)
    metrics += eval_rows(sp_id, 0, 0.17, 0.6, "eval", 0)
    for i, lr in enumerate(SP_LRS):
        lin = {**sp_lin, "clean.objective": "mmcl+ssl", "clean.lr": lr, "clean.epochs": EPOCHS,
               "clean.batch_size": 64, "clean.ssl_weight": 1.0, "clean.seed": seed}
        n, m = _clean(study, f"clean-{s}-sp-{i}", f"sp / lr={lr:g}", lin, [sp_id, deps[1]],
                      "mmcl+ssl", "mmcl+ssl", lr, shift)
        nodes, metrics = nodes + n, metrics + m
    return nodes, metrics


def write_study(db_path: Path, study: str = STUDY, seed: int = 0, shift: float = 0.0) -> None:
    """Write the study; `seed` goes into every lineage, `shift` moves all cleaning accuracies.
    Node ids carry the seed, so studies with different seeds share no node."""
    from xspec.store.schema import migrate

    s = f"s{seed}"
    poison_id = f"poison-{s}"
    poison = {"poison.kind": "badnet", "poison.target": "banana", "poison.poisons": 3000,
              "poison.seed": seed}
    nodes = [_node(study, poison_id, "poison", "badnet", poison, [])]
    metrics = []
    for p, pre in enumerate(STARTS):
        pre_lin = {**poison, "pretrain.objective": pre, "pretrain.lr": 1e-3,
                   "pretrain.attack.poisons": 3000, "pretrain.seed": seed}
        sel_lin = {**pre_lin, "select.policy": "best_accuracy"}
        pre_id, sel_id = f"pretrain-{s}-{p}", f"select-{s}-{p}"
        nodes += [_node(study, pre_id, "pretrain", f"pretrain {pre}", pre_lin, [poison_id]),
                  _node(study, sel_id, "select", f"select {pre}", sel_lin, [pre_id])]
        metrics += _pretrain_rows(pre_id, pre, 10)
        metrics += eval_rows(sel_id, 10, *STARTS[pre])
        for cln in ("mmcl", "mmcl+ssl"):
            settings = [0, 10] if (pre, cln) == ("mmcl", "mmcl+ssl") else [0]
            for poisons in settings:
                for i, lr in enumerate(LRS):
                    node = f"clean-{s}-{p}-{cln}-{poisons}-{i}"
                    lin = {**sel_lin, "clean.objective": cln, "clean.lr": lr,
                           "clean.epochs": EPOCHS, "clean.batch_size": 64,
                           "clean.ssl_weight": 1.0, "clean.seed": seed,
                           **({"clean.poisons": poisons} if poisons else {})}
                    name = f"{pre} / {cln} / lr={lr:g}" if i else f"{pre} / {cln} / {EVIL}"
                    n, m = _clean(study, node, name, lin, [sel_id, poison_id], pre, cln, lr,
                                  shift, poisons)
                    nodes, metrics = nodes + n, metrics + m
        if pre == "mmcl+ssl":
            n, m = _shrink_perturb(study, s, seed, sel_lin, [sel_id, poison_id], shift)
            nodes, metrics = nodes + n, metrics + m
    first = json.loads(next(n for n in nodes if n[2] == "clean")[6])
    nodes.append(_node(study, f"clean-{s}-x", "clean", "crashed", {**first, "clean.lr": 1e-3},
                       ["select-" + s + "-0", poison_id], "failed", f"CUDA out of memory {EVIL}"))
    nodes.append(_node(study, f"clean-{s}-y", "clean", "waiting", {**first, "clean.lr": 5e-3},
                       ["select-" + s + "-0", poison_id], "pending"))
    con = duckdb.connect(str(db_path))
    migrate(con)
    node_frame = pd.DataFrame(nodes, columns=NODE_COLUMNS)  # noqa: F841 (read by DuckDB)
    metric_frame = pd.DataFrame(metrics, columns=METRIC_COLUMNS)  # noqa: F841
    con.execute("INSERT INTO nodes SELECT study, id, kind, name, config, deps, lineage, status, "
                "error, updated::TIMESTAMP, NULL FROM node_frame")
    con.execute("INSERT INTO metrics BY NAME SELECT node_id, epoch, split, metric, value, "
                "n::BIGINT AS n, step::BIGINT AS step FROM metric_frame")
    con.execute("INSERT INTO studies VALUES (?, ?, ?, now())", [study, "specs/x.toml", "{}"])
    con.close()
