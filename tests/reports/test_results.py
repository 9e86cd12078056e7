"""xspec.results: the notebook API over a workspace's database, read-only."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import tests_reports_support as syn  # tests/ is on sys.path (conftest.py)
from xspec.errors import XspecError
from xspec.store.results import results




@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    syn.write_study(root / "xspec.duckdb", "a")
    syn.write_study(root / "xspec.duckdb", "b", seed=1, shift=0.01)
    return root


def test_cleaning_has_one_row_per_clean_node_and_epoch(workspace: Path) -> None:
    with results(workspace) as r:
        rows = r.cleaning("a").df()
        assert len(rows) == 27 * (syn.EPOCHS + 1)
        assert rows[rows["epoch"] == 0]["mmcl"].isna().all()
        assert sorted(rows["poisons"].unique()) == [0, 10]
        assert rows["shrink_perturb"].sum() == 2 * (syn.EPOCHS + 1)
        assert set(rows["seed"]) == {0} and (rows["top1_n"] == syn.EVAL_N).all()
        assert len(r.cleaning().df()) == 2 * len(rows)
        best = (r.cleaning("a").filter("epoch >= 1 AND asr <= 0.05")
                .aggregate("pretrain_objective, max(top1) AS best").order("pretrain_objective"))
        direct = r.sql(
            "SELECT n.lineage->>'$.\"pretrain.objective\"' AS pre, max(m.value) FROM nodes n "
            "JOIN metrics m ON m.node_id = n.id WHERE n.study = ? AND n.kind = 'clean' AND "
            "m.metric = 'top1' AND m.epoch >= 1 AND (m.node_id, m.epoch) IN (SELECT (node_id, "
            "epoch) FROM metrics WHERE metric = 'asr' AND value <= 0.05) GROUP BY pre "
            "ORDER BY pre", ["a"])
        assert best.fetchall() == direct.fetchall()


def test_nodes_metrics_and_read_only(workspace: Path) -> None:
    r = results(workspace / "xspec.duckdb")
    assert r.nodes("b").filter("kind = 'select'").count("*").fetchall()[0][0] == 2
    assert r.metrics("a").filter("split = 'candidate'").count("*").fetchall()[0][0] == 18
    with pytest.raises(duckdb.Error):
        r.sql("DELETE FROM nodes").fetchall()
    r.close()
    with pytest.raises(XspecError, match="no results database"):
        results(workspace / "missing")
