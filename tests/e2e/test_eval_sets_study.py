"""specs/toy/eval_sets.toml end to end: three zero-shot sets (one a class subset) and a retrieval
set, measured for every run and epoch, stored by set, and reported per set."""

import duckdb
import numpy as np
import pytest

from xspec.runtime.data import open_eval
from xspec.store.workspace import Workspace
from xspec.study import open_study, report_study, run_study

pytestmark = pytest.mark.slow

SPEC = __import__("pathlib").Path(__file__).resolve().parents[2] / "specs/toy/eval_sets.toml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("ws"))
    study = open_study(SPEC)
    outcome = run_study(study, workspace, "debug")
    return study, workspace, outcome, report_study(study, workspace)


def test_every_set_is_measured_at_every_evaluation(finished):
    study, workspace, outcome, _ = finished
    assert not outcome.failed and len(outcome.ran) == len(study.plan.nodes)
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    rows = con.execute("""SELECT n.kind, m.eval_set, m.split, count(DISTINCT m.epoch)
        FROM metrics m JOIN nodes n ON n.id = m.node_id
        WHERE m.eval_set IS NOT NULL AND n.kind = 'clean' AND m.metric IN ('top1', 'i2t_r1')
        GROUP BY ALL ORDER BY ALL""").fetchall()
    assert rows == [("clean", "captions", "retrieval:captions", 3),
                    ("clean", "fashion_test", "eval", 3),
                    ("clean", "footwear_and_bags", "eval:footwear_and_bags", 3),
                    ("clean", "footwear_and_bags", "probe:footwear_and_bags", 3),
                    ("clean", "train_split", "eval:train_split", 3)]
    labels = open_eval({"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
                        "split": "test", "size": 256}, 8).labels
    subset_n = con.execute("""SELECT DISTINCT metric, n FROM metrics
        WHERE eval_set = 'footwear_and_bags' ORDER BY metric""").fetchall()
    inside = int(np.isin(labels, [5, 7, 8, 9]).sum())
    assert subset_n == [("asr", inside - int((labels == 8).sum())), ("top1", inside),
                        ("top5", inside)]
    retrieval = {m for (m,) in con.execute(
        "SELECT DISTINCT metric FROM metrics WHERE eval_set = 'captions'").fetchall()}
    assert retrieval == {f"{w}_r{k}" for w in ("i2t", "t2i", "asr") for k in (1, 5, 10)}
    probes = con.execute("""SELECT count(DISTINCT (node_id, epoch)), min(n), max(n)
        FROM metrics WHERE split = 'probe:footwear_and_bags' AND metric = 'top1'""").fetchone()
    assert probes == (2 * 3 + 2, inside, inside)  # 2 cleaning runs x 3 epochs, 2 pre-training


def test_report_shows_every_set(finished):
    *_, report = finished
    html = report.read_text()
    assert 'id="eval-sets"' in html and 'id="robustness"' in html
    assert "fashion_test (primary)" in html
    assert "chart-pareto-footwear_and_bags" in html and "chart-pareto-train_split" in html
    assert "probe top-1" in html
