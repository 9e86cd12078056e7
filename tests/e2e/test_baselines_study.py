"""The field's baselines end to end on a miniature study: RoCLIP and SafeCLIP pre-training runs
and a detect node per selected model, scores on disk and AUROCs in DuckDB."""

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study, run_study

pytestmark = pytest.mark.slow

SPEC = """
[study]
name = "mini_baselines"
seed = 0

[data]
train = { format = "fashion_mnist", size = 256 }
eval = { format = "fashion_mnist", split = "test", size = 64 }

[attack]
kind = "badnet"
target = "bag"
poisons = 16
trigger = { size = 4, pattern = "gaussian_fixed" }

[model]
arch = "xspec-vit-micro"

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
pretrain.safeclip = { inmodal_warmup = 0, multimodal_warmup = 0, start_ratio = 0.5 }
"""


def test_defended_runs_and_detection_land_in_duckdb(tmp_path: Path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    study, workspace = open_study(path), Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
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
