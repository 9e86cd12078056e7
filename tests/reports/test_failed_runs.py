"""A failed run's epochs (a model that diverged to NaN scores chance accuracy and ASR 0) are
never candidates of Table 2, a selection policy or a plot; the report says why it failed."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import tests_reports_support as syn  # tests/ is on sys.path (conftest.py)
from xspec.reports import chartdata, load, policies, queries
from xspec.reports.html import build_report

DIVERGED = "clean-s0-diverged"
WHY = "parameters became non-finite at epoch 3, step 30 (1 tensor(s), e.g. visual.proj)"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ws") / "xspec.duckdb"
    syn.write_study(path, syn.STUDY)
    con = duckdb.connect(str(path))
    lineage, deps = con.execute(
        "SELECT lineage, deps FROM nodes WHERE kind = 'clean' AND status = 'done' AND "
        "lineage->>'$.\"clean.objective\"' = 'mmcl' AND "
        "lineage->>'$.\"pretrain.objective\"' = 'mmcl' LIMIT 1").fetchone()
    lineage = {**json.loads(lineage), "clean.lr": 0.5}
    con.execute("INSERT INTO nodes VALUES (?, ?, 'clean', 'diverged', '{}', ?, ?, 'failed', ?, "
                "now(), NULL)", [syn.STUDY, DIVERGED, deps, json.dumps(lineage), WHY])
    for epoch in (1, 2):  # what it logged before failing: better than any real run
        for row in syn.eval_rows(DIVERGED, epoch, 0.99, 0.0):
            con.execute("INSERT INTO metrics (node_id, epoch, split, metric, value, n, step) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", list(row))
    con.close()
    return path


@pytest.fixture(scope="module")
def con(db: Path):
    connection = load.open_store(db)
    load.load(connection, [syn.STUDY])
    yield connection
    connection.close()


def test_table2_and_policies_never_pick_a_failed_run(con) -> None:
    table2 = queries.table2(con, 0.05)
    assert DIVERGED not in set(table2["best_node"].dropna())
    assert table2["best_top1"].max() < 0.99
    picks = policies.selection_policies(con, 0.05)
    assert DIVERGED not in set(picks["node_id"].dropna())
    assert picks["top1"].max() < 0.99


def test_plots_leave_failed_runs_out(con) -> None:
    assert DIVERGED not in set(chartdata.pareto_points(con)["node_id"])
    assert DIVERGED not in set(chartdata.trajectories(con)["node_id"])


def test_report_lists_failed_runs_and_why(db: Path, tmp_path: Path) -> None:
    html = build_report(db, syn.STUDY, tmp_path / "report", static=False).read_text()
    start = html.index('<table id="failed">')
    failed = html[start:html.index("</table>", start)]
    assert "diverged" in failed and WHY in failed
    assert "<td>2</td>" in failed  # its last evaluated epoch
    assert "their epochs are left out of every table, policy and plot" in html
