"""RoCLIP's caption pool survives a resume: a run killed after epoch 2 and resumed gives the
same metrics rows as one that ran through (a fresh pool at the resume would change epoch 3)."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study
from tests_support import mini_spec  # noqa: E402  (conftest puts tests/ on sys.path)

pytestmark = pytest.mark.slow

BODY = """
[pretrain]
objective = "mmcl"
epochs = 3
batch_size = 64
lr = 1e-3
warmup_steps = 2
select = "final"
roclip = { pool_size = 100, every = 1, augment = false }

[evaluate]
batch_size = 64
"""
SPEC = mini_spec('mini_roclip_resume', BODY, train=192, poisons=8, trigger='{ size = 4, pattern = "gaussian_fixed" }')


def _rows(workspace: Workspace, node) -> list[tuple]:
    rows = pq.read_table(workspace.run_dir(node).metrics_file).to_pylist()
    return sorted((r["epoch"], r["split"], r["metric"], r["value"]) for r in rows
                  if r["split"] != "perf")


def test_a_killed_and_resumed_roclip_run_gives_the_same_rows(tmp_path: Path, monkeypatch):
    from xspec.runtime import recorder

    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    study = open_study(path)
    node = study.plan.of_kind("pretrain")[0]
    through = Workspace(tmp_path / "through")
    assert not run_study(study, through, "debug").failed

    original = recorder.save_checkpoint

    def killed_after_epoch_two(target, payload):
        original(target, payload)
        if target.name == "last.pt" and payload["epoch"] == 2:
            raise KeyboardInterrupt  # as if killed right after epoch 2 was saved

    monkeypatch.setattr(recorder, "save_checkpoint", killed_after_epoch_two)
    resumed = Workspace(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        run_study(study, resumed, "debug")
    monkeypatch.setattr(recorder, "save_checkpoint", original)
    resumed.run_dir(node).set_status("failed", error="killed")
    assert node.id in run_study(study, resumed, "debug").ran
    assert "resuming after epoch 2" in resumed.run_dir(node).log_file.read_text()
    assert _rows(resumed, node) == _rows(through, node)
