"""The field's baselines end to end on a miniature study: RoCLIP and SafeCLIP pre-training runs
and a detect node per selected model, scores on disk and AUROCs in DuckDB."""

from pathlib import Path

import html
import json
import re

import duckdb
import pandas as pd
import pytest

from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study, report_study, run_study
from tests_support import mini_spec  # noqa: E402  (conftest puts tests/ on sys.path)

pytestmark = pytest.mark.slow

BODY = """
[pretrain]
objective = "mmcl"
epochs = 1
batch_size = 64
lr = 1e-3
warmup_steps = 2

[detect]
batch_size = 128
[detect.k_distance]
[detect.clip_score]
[detect.cognitive_distillation]
steps = 1

[evaluate]
batch_size = 64

[[variants]]
study.notes = "none"

[[variants]]
pretrain.roclip = { pool_size = 100, every = 1 }

[[variants]]
pretrain.safeclip.inmodal_warmup = 0
pretrain.safeclip.multimodal_warmup = 0
pretrain.safeclip.first_split = "ratio"
pretrain.safeclip.start_ratio = 0.5
"""
SPEC = mini_spec('mini_baselines', BODY, trigger='{ size = 4, pattern = "gaussian_fixed" }')


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("baselines")
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    study, workspace = open_study(path), Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    return study, workspace


def test_defended_runs_and_detection_land_in_duckdb(mini):
    study, workspace = mini
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    rows = con.execute("""SELECT m.split, count(DISTINCT m.node_id) FROM metrics m
        JOIN nodes n ON n.id = m.node_id WHERE n.kind = 'detect' AND m.metric = 'auroc'
        GROUP BY ALL ORDER BY ALL""").fetchall()
    assert rows == [("detect:clip_score", 3), ("detect:cognitive_distillation", 3),
                    ("detect:k_distance", 3)]
    for node in study.plan.of_kind("detect"):
        scores = pd.read_parquet(workspace.root / "runs" / node.run_name / "scores.parquet")
        assert len(scores) == 256 and int(scores["poisoned"].sum()) == 16
        assert scores[["k_distance", "clip_score"]].notna().all().all()
    logs = "".join((workspace.root / "runs" / n.run_name / "log.txt").read_text()
                   for n in study.plan.of_kind("pretrain"))
    assert "safeclip epoch 1: 128 safe pairs" in logs


def _table(page: str, table_id: str) -> list[list[str]]:
    """The body rows of one table of the report, as cell texts."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_report_shows_pretrain_defences_and_detection_with_duckdb_numbers(mini):
    study, workspace = mini
    page = report_study(study, workspace).read_text()
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    auroc = {(node[:12], split.split(":")[1]): value for node, split, value in con.execute(
        "SELECT node_id, split, value FROM metrics WHERE split LIKE 'detect:%' "
        "AND metric = 'auroc'").fetchall()}
    rows = _table(page, "detection")
    assert len(rows) == 9  # 3 pre-trained models x 3 detectors
    shown = {(r[-1], r[-6]): float(r[-5]) for r in rows}
    assert shown == {key: round(value, 3) for key, value in auroc.items()}
    assert {r[-7] for r in rows} == {"none", "roclip", "safeclip"}  # the defence column
    top1, defence = {}, {}  # by the select node's and the pre-training node's short id
    for select in study.plan.of_kind("select"):
        chosen = json.loads((workspace.run_dir(select).path / "selected.json").read_text())
        pretrain = study.plan.nodes[next(d for d in select.deps
                                         if study.plan.nodes[d].kind == "pretrain")]
        value = con.execute(
            "SELECT value FROM metrics WHERE node_id = ? AND epoch = ? AND split = 'eval' "
            "AND metric = 'top1'", [pretrain.id, chosen["epoch"]]).fetchone()[0]
        name = ("roclip" if pretrain.config.roclip is not None else
                "safeclip" if pretrain.config.safeclip is not None else "none")
        for short in (select.short, pretrain.short):
            top1[short], defence[short] = value, name
    defences = _table(page, "pretrain-defences")
    assert sorted(r[-7] for r in defences) == ["none", "roclip", "safeclip"]
    for row in defences:
        assert row[-7] == defence[row[-1]]
        assert row[-4].startswith(f"{100 * top1[row[-1]]:.2f}")  # top-1 (%) with its interval
    assert 'id="chart-roc"' in page
    roc = page[page.index("chart-roc"):]
    assert all(name in roc for name in ("k_distance", "clip_score", "cognitive_distillation"))
