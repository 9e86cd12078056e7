"""Failures lose nothing: a NaN loss fails its node with the reason, keeps the last good
checkpoint, and the rest of the grid goes on; a rerun retries only what is not done."""

import json

import torch

from xspec.runtime import objectives
from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study


def test_nan_loss_fails_one_node_keeps_checkpoint_and_grid_continues(write_spec, base_spec,
                                                                     tmp_path, monkeypatch):
    text = base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "ssl"]')
    text = text.replace("[clean]\n", '[clean]\nobjective = "mmcl"\n')
    study = open_study(write_spec(text))
    real = objectives.LOSSES["ssl"]
    calls = {"n": 0}

    def ssl_turns_nan(features, scale):
        calls["n"] += 1
        value = real(features, scale)
        return value * float("nan") if calls["n"] > 2 else value  # epoch 1 has 2 steps

    monkeypatch.setitem(objectives.LOSSES, "ssl", ssl_turns_nan)
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    ssl_node = next(n for n in study.plan.of_kind("pretrain") if n.config["objective"] == "ssl")
    run = workspace.run_dir(ssl_node)
    assert list(outcome.failed) == [ssl_node.id]
    assert run.status()["state"] == "failed"
    assert "loss is nan at epoch 2" in run.status()["error"]
    assert run.checkpoint(1).exists() and not run.checkpoint(2).exists()
    assert len(outcome.blocked) == 3  # its select and two cleaning runs
    mmcl_clean = [n for n in study.plan.of_kind("clean") if n.lineage["pretrain.objective"] == "mmcl"]
    assert all(workspace.state(n) == "done" for n in mmcl_clean)

    monkeypatch.setitem(objectives.LOSSES, "ssl", real)
    again = run_study(study, workspace, "debug")
    assert again.failed == {} and ssl_node.id in again.ran
    assert len(again.ran) == 4  # the failed node and the three it blocked
    rows = json.loads(json.dumps(run.status()))
    assert rows["state"] == "done"


def test_resume_recomputes_only_the_interrupted_epoch(write_spec, base_spec, tmp_path):
    """A crash after epoch 1 (simulated by deleting what epoch 2 wrote) resumes from last.pt."""
    study = open_study(write_spec(base_spec.replace("[clean]", "[clean_off]").split("[clean_off]")[0]))
    workspace = Workspace(tmp_path / "ws")
    node = study.plan.of_kind("pretrain")[0]
    from xspec.runtime import stages

    seen = []
    original = stages.save_checkpoint

    def crash_after_epoch_one(path, payload):
        original(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 1:
            seen.append(1)
            raise KeyboardInterrupt  # as if killed right after epoch 1 was saved

    stages.save_checkpoint = crash_after_epoch_one
    try:
        try:
            run_study(study, workspace, "debug")
        except KeyboardInterrupt:
            pass
    finally:
        stages.save_checkpoint = original
    run = workspace.run_dir(node)
    assert seen == [1] and (run.checkpoints / "last.pt").exists()
    run.set_status("failed", error="killed")
    outcome = run_study(study, workspace, "debug")
    assert node.id in outcome.ran
    import pyarrow.parquet as pq
    rows = pq.read_table(run.metrics_file).to_pylist()
    keys = [(r["epoch"], r["split"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert sorted({r["epoch"] for r in rows}) == [1, 2]
    assert "resuming after epoch 1" in run.log_file.read_text()
    assert torch.load(run.checkpoint(2), weights_only=True)["epoch"] == 2
