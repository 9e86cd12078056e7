"""Detect-then-retrain end to end on a miniature study: the retrained pretrain node leaves out
exactly the pairs its detector scored highest, and sees fewer poisons than the first run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study
from tests_support import mini_spec  # noqa: E402  (conftest puts tests/ on sys.path)

pytestmark = pytest.mark.slow

BODY = """
[pretrain]
objective = "mmcl"
epochs = 2
batch_size = 64
lr = 1e-3
warmup_steps = 2
select = "final"

[detect]
batch_size = 256
[detect.k_distance]
[detect.clip_score]
[detect.retrain]
detector = "k_distance"
drop = 0.25

[evaluate]
batch_size = 64
"""
SPEC = mini_spec('mini_retrain', BODY, trigger='{ size = 8, pattern = "gaussian_fixed", location = "four_corners" }')


def test_retrain_drops_the_top_scored_pairs_and_sees_fewer_poisons(tmp_path: Path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    study, workspace = open_study(path), Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    detect = study.plan.of_kind("detect")[0]
    retrained = next(n for n in study.plan.of_kind("pretrain") if n.config.drop is not None)
    scores = pd.read_parquet(workspace.root / "runs" / detect.run_name / "scores.parquet")
    dropped = json.loads((workspace.root / "runs" / retrained.run_name / "dropped.json")
                         .read_text())
    top = scores.sort_values("k_distance", ascending=False, kind="stable")["index"][:64]
    assert sorted(dropped["dropped_indices"]) == sorted(top.tolist())
    assert dropped["kept"] == 192 and dropped["poisons"] == 16
    assert dropped["poisons_kept"] == int(scores["poisoned"].to_numpy()[
        np.setdiff1d(np.arange(256), dropped["dropped_indices"])].sum())
    assert dropped["poisons_kept"] < dropped["poisons"]
    checkpoints = workspace.root / "runs" / retrained.run_name / "checkpoints"
    assert (checkpoints / "epoch_2.pt").exists() or any(checkpoints.glob("epoch_2*"))
