"""Report queries and HTML on a small synthetic study written straight into DuckDB."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from xspec.errors import XspecError
from xspec.reports import charts, queries
from xspec.reports.html import build_report, sci, short_pct

EVIL = "<script>alert(1)</script>"
STUDY = f"cc6m {EVIL}"
LRS = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4]
EVAL_N = 50_000
ASR_N = 49_950
STARTS = {"mmcl": (0.2376, 0.995), "mmcl+ssl": (0.2386, 0.998)}

TABLE2_BY_HAND = """
WITH ev AS (
    SELECT n.id, n.kind, n.lineage->>'$."pretrain.objective"' AS pre,
        n.lineage->>'$."clean.objective"' AS cln,
        (n.lineage->>'$."clean.lr"')::DOUBLE AS lr, m.epoch,
        max(CASE WHEN m.metric = 'top1' THEN m.value END) AS top1,
        max(CASE WHEN m.metric = 'asr' THEN m.value END) AS asr
    FROM nodes n, metrics m
    WHERE m.node_id = n.id AND m.split = 'eval' AND n.study = ?
    GROUP BY n.id, n.kind, pre, cln, lr, m.epoch
),
orig AS (SELECT pre, top1, asr FROM ev WHERE kind = 'select'),
ok AS (SELECT * FROM ev WHERE kind = 'clean' AND epoch > 0 AND asr <= ?),
best AS (SELECT pre, cln, max(top1) AS top1 FROM ok GROUP BY pre, cln)
SELECT g.pre, g.cln, orig.top1 AS orig_top1, orig.asr AS orig_asr, best.top1 AS best_top1,
    (SELECT min(lr) FROM ok WHERE ok.pre = g.pre AND ok.cln = g.cln AND ok.top1 = best.top1)
        AS best_lr,
    100 * (best.top1 - orig.top1) / orig.top1 AS rel
FROM (SELECT DISTINCT pre, cln FROM ev WHERE kind = 'clean') g
JOIN orig USING (pre)
LEFT JOIN best ON best.pre = g.pre AND best.cln = g.cln
ORDER BY g.pre, g.cln
"""


def _cleaning_curve(pre: str, cln: str, lr: float, epoch: int) -> tuple[float, float]:
    """Synthetic (top1, asr): mmcl models clean well, mmcl+ssl ones lose accuracy first."""
    top1, asr = STARTS[pre]
    strength = math.log10(lr / LRS[0]) / 2 + 0.3
    if cln == "mmcl":
        return top1 * (1 + 0.01 * math.sin(epoch + lr * 1e6)), asr * (1 - 0.01 * epoch)
    decay = math.exp(-strength * epoch * (1.0 if pre == "mmcl" else 0.45))
    keep = 1.0 if pre == "mmcl" else 0.5 + 0.5 * decay
    return top1 * keep * (1 + 0.004 * math.cos(3 * epoch + lr * 1e5)), asr * decay


def _eval_rows(node: str, epoch: int, top1: float, asr: float) -> list[tuple]:
    return [(node, epoch, "eval", "top1", top1, EVAL_N, None),
            (node, epoch, "eval", "top5", min(1.0, 2.1 * top1), EVAL_N, None),
            (node, epoch, "eval", "asr", asr, ASR_N, None)]


def _pretrain_rows(node: str, pre: str, epochs: int) -> list[tuple]:
    top1, asr = STARTS[pre]
    rows = []
    for epoch in range(1, epochs + 1):
        frac = epoch / epochs
        speed = 1.0 if pre == "mmcl" else 1.6
        rows += _eval_rows(node, epoch, top1 * (1 - 0.7 * (1 - frac) ** speed),
                           min(0.999, asr * frac ** (0.2 * speed)))
        loss = 5.0 * math.exp(-1.5 * speed * frac) + 0.8 * speed
        rows.append((node, epoch, "train", "loss", loss, None, None))
    return rows


def _node(study: str, node: str, kind: str, name: str, lineage: dict, status: str = "done",
          error: str | None = None) -> tuple:
    return (study, node, kind, name, json.dumps({}), json.dumps([]), json.dumps(lineage),
            status, error, None)


def write_study(db_path: Path, study: str, epochs: int = 6) -> None:
    """A poison node, two pretrain/select pairs and a sweep of cleaning runs, plus bad nodes."""
    from xspec.store.schema import migrate

    poison = {"poison.kind": "badnet", "poison.target": "banana"}
    nodes, metrics = [_node(study, "poison-0", "poison", "badnet", poison)], []
    for p, pre in enumerate(STARTS):
        pre_lin = {**poison, "pretrain.objective": pre, "pretrain.lr": 1e-3}
        sel_lin = {**pre_lin, "select.policy": "best_accuracy"}
        nodes += [_node(study, f"pretrain-{p}", "pretrain", f"pretrain {pre}", pre_lin),
                  _node(study, f"select-{p}", "select", f"select {pre}", sel_lin)]
        metrics += _pretrain_rows(f"pretrain-{p}", pre, 10)
        metrics += _eval_rows(f"select-{p}", 10, *STARTS[pre])
        for cln in ("mmcl", "mmcl+ssl"):
            for i, lr in enumerate(LRS):
                node = f"clean-{p}-{cln}-{i}"
                lin = {**sel_lin, "clean.objective": cln, "clean.lr": lr, "clean.epochs": epochs,
                       "clean.batch_size": 64, "clean.ssl_weight": 1.0, "clean.mmcl_weight": 1.0}
                name = f"{pre} / {cln} / lr={lr:g}" if i else f"{pre} / {cln} / {EVIL}"
                nodes.append(_node(study, node, "clean", name, lin))
                metrics += _eval_rows(node, 0, *STARTS[pre])
                for epoch in range(1, epochs + 1):
                    metrics += _eval_rows(node, epoch, *_cleaning_curve(pre, cln, lr, epoch))
    nodes.append(_node(study, "clean-x", "clean", "crashed", {**poison}, "failed",
                       f"CUDA out of memory {EVIL}"))
    nodes.append(_node(study, "clean-y", "clean", "waiting", {**poison}, "pending"))
    con = duckdb.connect(str(db_path))
    migrate(con)
    con.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", nodes)
    con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", metrics)
    con.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "xspec.duckdb"
    write_study(path, STUDY)
    write_study_other = duckdb.connect(str(path))
    write_study_other.execute(
        "INSERT INTO nodes SELECT 'other', id, kind, name, config, deps, lineage, 'failed', "
        "NULL, updated FROM nodes WHERE kind = 'select'")
    write_study_other.close()
    return path


@pytest.fixture
def con(db: Path):
    connection = duckdb.connect(str(db), read_only=True)
    yield connection
    connection.close()


@pytest.mark.parametrize("threshold", [0.05, 0.2])
def test_table2_matches_hand_written_query(con, threshold: float) -> None:
    got = queries.table2(con, STUDY, threshold)
    want = con.execute(TABLE2_BY_HAND, [STUDY, threshold]).df()
    assert len(got) == len(want) == 4
    assert list(got["pretrain_objective"]) == list(want["pre"])
    assert list(got["clean_objective"]) == list(want["cln"])
    for ours, theirs in [("original_top1", "orig_top1"), ("original_asr", "orig_asr"),
                         ("best_top1", "best_top1"), ("best_lr", "best_lr"),
                         ("relative_change_pct", "rel")]:
        pd.testing.assert_series_equal(got[ours], want[theirs], check_names=False)
    assert (got["runs"] == len(LRS)).all()


def test_table2_no_epoch_reached_threshold(con) -> None:
    rows = queries.table2(con, STUDY, 0.05).set_index(["pretrain_objective", "clean_objective"])
    assert rows["best_top1"].isna().tolist() == [True, False, True, False]
    ssl = rows.loc[("mmcl+ssl", "mmcl+ssl")]
    assert ssl["best_asr"] <= 0.05 and ssl["relative_change_pct"] < -30
    assert rows.loc[("mmcl", "mmcl+ssl"), "relative_change_pct"] > -2


def test_queries_shapes(con) -> None:
    points = queries.cleaning_points(con, STUDY)
    assert len(points) == 2 * 2 * len(LRS) * 7
    assert set(points["epoch"]) == set(range(7))
    assert (points["top1_n"] == EVAL_N).all() and (points["asr_n"] == ASR_N).all()
    starts = queries.starting_points(con, STUDY)
    assert list(starts["objective"]) == ["mmcl", "mmcl+ssl"]
    assert list(starts["epoch"]) == [10, 10]
    curves = queries.pretrain_curves(con, STUDY)
    assert len(curves) == 2 * 10 * 3
    runs = queries.run_table(con, STUDY)
    assert list(runs["kind"])[:5] == ["poison", "pretrain", "pretrain", "select", "select"]
    counts = queries.node_counts(con, STUDY).set_index("kind")
    assert counts.loc["all"].tolist() == [1, 0, 25, 1, 27]
    assert counts.loc["clean"].tolist() == [1, 0, 20, 1, 22]
    assert queries.node_counts(con, "other").set_index("kind").loc["all", "failed"] == 2


def test_charts_are_valid_vega_lite(con) -> None:
    points = queries.cleaning_points(con, STUDY)
    starts = queries.starting_points(con, STUDY)
    for chart in [charts.pareto_chart(points, starts, 0.05), charts.trajectory_chart(points),
                  charts.pretrain_curve_chart(queries.pretrain_curves(con, STUDY))]:
        spec = chart.to_dict(validate=True)
        assert sum(len(rows) for rows in spec["datasets"].values()) < 5000


def test_report_escapes_values_and_loads_nothing(db: Path, tmp_path: Path) -> None:
    html = build_report(db, STUDY, tmp_path / "report").read_text(encoding="utf-8")
    assert EVIL not in html
    assert html.count("</script>") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    outside_bundle = "".join(p for p in html.split("</script>") if "window.vegaEmbed=" not in p)
    assert not re.search(r"<(link|iframe|img|object|embed)\b", outside_bundle, re.I)
    assert "http://" not in outside_bundle and "https://" not in outside_bundle
    assert outside_bundle.count("vegaEmbed(") == 1 and html.count('class="chart"') == 3


def test_report_table2_cells(db: Path, tmp_path: Path) -> None:
    html = build_report(db, STUDY, tmp_path / "r", asr_threshold=0.05).read_text()
    table = html[html.index('<table id="table2">'):html.index("</table>", html.index("table2"))]
    assert table.count("no epoch reached ASR ≤ 5%") == 2
    assert "23.76%" in table and "99.50%" in table and "23.86%" in table


def test_report_errors(db: Path, tmp_path: Path) -> None:
    with pytest.raises(XspecError, match="no nodes for study 'missing'"):
        build_report(db, "missing", tmp_path)
    with pytest.raises(XspecError, match="no results database"):
        build_report(tmp_path / "absent.duckdb", STUDY, tmp_path)


def test_report_with_nodes_but_no_metrics(db: Path, tmp_path: Path) -> None:
    html = build_report(db, "other", tmp_path / "o").read_text()
    assert "no cleaning epochs recorded yet" in html and 'class="chart"' not in html


@pytest.mark.parametrize("value, text", [(5e-7, "5e-7"), (2.5e-5, "2.5e-5"), (1e-4, "1e-4"),
                                          (None, "—")])
def test_sci(value: float | None, text: str) -> None:
    assert sci(value) == text


@pytest.mark.parametrize("value, text", [(0.05, "5%"), (0.025, "2.5%"), (0.1, "10%")])
def test_short_pct(value: float, text: str) -> None:
    assert short_pct(value) == text
