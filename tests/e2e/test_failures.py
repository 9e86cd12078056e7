"""Failures lose nothing: a NaN loss fails its node with the reason, keeps the last good
checkpoint, and the rest of the grid goes on; a rerun retries only what is not done."""

import json

import pytest
import torch

from xspec.runtime import objectives
from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study


@pytest.mark.slow
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
    ssl_node = next(n for n in study.plan.of_kind("pretrain") if n.identity["objective"] == "ssl")
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


@pytest.mark.slow
def test_resume_recomputes_only_the_interrupted_epoch(write_spec, base_spec, tmp_path):
    """A crash after epoch 1 (simulated by deleting what epoch 2 wrote) resumes from last.pt."""
    study = open_study(write_spec(base_spec.replace("[clean]", "[clean_off]").split("[clean_off]")[0]))
    workspace = Workspace(tmp_path / "ws")
    node = study.plan.of_kind("pretrain")[0]
    from xspec.runtime import recorder

    seen = []
    original = recorder.save_checkpoint

    def crash_after_epoch_one(path, payload):
        original(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 1:
            seen.append(1)
            raise KeyboardInterrupt  # as if killed right after epoch 1 was saved

    recorder.save_checkpoint = crash_after_epoch_one
    try:
        try:
            run_study(study, workspace, "debug")
        except KeyboardInterrupt:
            pass
    finally:
        recorder.save_checkpoint = original
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


def _csv_study(tmp_path, n_bad: int, policy: str = "skip", limit: float = 0.05):
    import csv

    import numpy as np
    from PIL import Image

    from xspec.runtime.data import open_pairs

    pairs = open_pairs({"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
                        "split": "train", "size": 120}, 28)
    (tmp_path / "img").mkdir()
    rows = [["image", "caption"]]
    for i, caption in enumerate(pairs.captions):
        name = f"img/{i}.png"
        if i < n_bad:
            (tmp_path / name).write_bytes(b"\x89PNG broken")
        else:
            Image.fromarray(pairs.images.pixels[i].permute(1, 2, 0).numpy().astype(np.uint8)).save(
                tmp_path / name)
        rows.append([name, caption])
    with open(tmp_path / "train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    spec = tmp_path / "csv.toml"
    spec.write_text(f"""
[study]
name = "csv"
[data]
train = {{ format = "csv", path = "train.csv" }}
eval = {{ format = "fashion_mnist", split = "test", size = 32 }}
on_bad_image = "{policy}"
max_bad_fraction = {limit}
[attack]
kind = "badnet"
target = "bag"
poisons = 8
[model]
arch = "xspec-vit-micro"
[pretrain]
epochs = 1
batch_size = 40
""")
    return open_study(spec)


@pytest.mark.slow
def test_bad_images_are_skipped_and_counted_in_status(tmp_path):
    study = _csv_study(tmp_path, n_bad=3)
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed
    node = study.plan.of_kind("pretrain")[0]
    assert workspace.run_dir(node).status()["bad_train_images"] == 3
    from xspec.study import report_study

    html = report_study(study, workspace).read_text()
    assert "unreadable images" in html and "<td>3</td>" in html


@pytest.mark.slow
def test_too_many_bad_images_fail_the_node_with_the_count(tmp_path):
    study = _csv_study(tmp_path, n_bad=12, limit=0.05)
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    node = study.plan.of_kind("pretrain")[0]
    assert "12 of 120 train images are unreadable" in outcome.failed[node.id]


def test_bad_image_policy_fail_stops_at_the_first(tmp_path):
    """Three unreadable images: the run stops at whichever it meets first, names that one
    alone, and finishes no epoch (under "skip" the same data trains: see above)."""
    import re

    study = _csv_study(tmp_path, n_bad=3, policy="fail")
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    node = study.plan.of_kind("pretrain")[0]
    named = re.findall(r"img/(\d+)\.png", outcome.failed[node.id])
    assert len(set(named)) == 1 and named[0] in {"0", "1", "2"}
    assert workspace.run_dir(node).latest_checkpoint() is None


@pytest.mark.slow
def test_retried_node_does_not_block_its_dependents(write_spec, base_spec, tmp_path):
    """A node that failed before is retried by the local executor; while its worker starts,
    its dependents wait instead of reading the old "failed" and giving up."""
    study = open_study(write_spec(base_spec.split("[clean]")[0]))
    workspace = Workspace(tmp_path / "ws")
    pretrain = study.plan.of_kind("pretrain")[0]
    workspace.prepare(pretrain).set_status("failed", error="killed earlier")
    outcome = run_study(study, workspace, "local")
    assert outcome.blocked == [] and outcome.failed == {}
    assert all(workspace.state(n) == "done" for n in study.plan.ordered())


def _eval_rows(run) -> dict:
    import pyarrow.parquet as pq

    return {(r["epoch"], r["metric"]): r["value"] for r in pq.read_table(run.metrics_file).to_pylist()
            if r["split"] in ("eval", "train")}


@pytest.mark.slow
def test_l2_to_start_anchors_a_resumed_cleaning_run_at_its_real_start(write_spec, base_spec,
                                                                      tmp_path):
    """Killed after epoch 1 and resumed, an L2-to-start cleaning run pulls toward the weights
    it started from, not toward the resumed ones: its rows equal an uninterrupted run's."""
    text = base_spec.replace("lr = [1e-5, 2e-5]", "lr = 1e-3\nl2_weight = 50.0\nbatch_size = 16")
    study = open_study(write_spec(text))
    node = study.plan.of_kind("clean")[0]
    whole = Workspace(tmp_path / "whole")
    assert not run_study(study, whole, "debug").failed
    from xspec.runtime import recorder

    original = recorder.save_checkpoint

    def crash_after_cleaning_epoch_one(path, payload):
        original(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 1 and payload["node_id"] == node.id:
            raise KeyboardInterrupt

    resumed = Workspace(tmp_path / "resumed")
    recorder.save_checkpoint = crash_after_cleaning_epoch_one
    try:
        with pytest.raises(KeyboardInterrupt):
            run_study(study, resumed, "debug")
    finally:
        recorder.save_checkpoint = original
    resumed.run_dir(node).set_status("failed", error="killed")
    assert not run_study(study, resumed, "debug").failed
    assert "resuming after epoch 1" in resumed.run_dir(node).log_file.read_text()
    assert _eval_rows(resumed.run_dir(node)) == _eval_rows(whole.run_dir(node))
