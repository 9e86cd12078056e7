"""Grid packing (`[run] pack = K`): a cleaning grid trained side by side in one process gives
the same metric rows as its points run one by one; each point stays its own node."""

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from xspec.cli import app
from xspec.compiler.packing import packs
from xspec.runtime import loop, packed, recorder
from xspec.store.workspace import Workspace
from xspec.reports import load, queries
from xspec.study import ingest_study, open_study, run_study

GRID = """
[clean]
objective = "mmcl+ssl"
lr = [1e-5, 1e-4, 1e-3]
epochs = 2
batch_size = 32
warmup_steps = 1
"""


def _spec(base_spec: str, pack: int, lrs: str = "[1e-5, 1e-4, 1e-3]") -> str:
    head = base_spec.split("[clean]")[0]
    # One compute thread everywhere: the reference runs in this process, the local executor's
    # pack in a child, and float sums differ in their last bits across thread counts.
    return head + GRID.replace("[1e-5, 1e-4, 1e-3]", lrs) + f"\n[run]\npack = {pack}\nthreads = 1\n"


def _rows(workspace: Workspace, node) -> list[dict]:
    """The node's metric rows but the loader's timings (split "perf")."""
    table = pq.read_table(workspace.run_dir(node).metrics_file).to_pylist()
    return sorted((r for r in table if r["split"] != "perf"),
                  key=lambda r: (r["epoch"], r["split"], r["metric"]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The grid run unpacked: the upstream nodes once, each cleaning point in turn."""
    from tests_support import BASE

    root = tmp_path_factory.mktemp("unpacked")
    path = root / "spec.toml"
    path.write_text(_spec(BASE, 1))
    study, workspace = open_study(path), Workspace(root / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed
    return study, workspace


def _packed_copy(reference, tmp_path, pack: int = 3):
    """The reference workspace with its cleaning runs removed, and the spec with run.pack."""
    study, workspace = reference
    copy = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.root, copy.root)
    for node in study.plan.of_kind("clean"):
        shutil.rmtree(copy.run_dir(node).path)
    path = tmp_path / "spec.toml"
    path.write_text(_spec(open(study.plan.spec_path).read().split("[clean]")[0], pack))
    return open_study(path), copy


@pytest.mark.slow
def test_packed_grid_gives_the_unpacked_metric_rows(reference, tmp_path):
    study, copy = _packed_copy(reference, tmp_path)
    outcome = run_study(study, copy, "debug")
    cleans = study.plan.of_kind("clean")
    assert sorted(outcome.ran) == sorted(n.id for n in cleans)
    for node in cleans:
        rows = _rows(copy, node)
        assert rows == _rows(reference[1], node)
        assert {r["split"] for r in rows} == {"train", "eval", "heldout"}
        status = copy.run_dir(node).status()
        assert status["state"] == "done"
        assert sorted(status["packed_with"]) == sorted(n.id for n in cleans if n is not node)
        assert copy.run_dir(node).checkpoint(2).exists()
        record = json.loads((copy.run_dir(node).path / "provenance.json").read_text())
        assert sorted(record["epoch_seconds"]) == ["1", "2"]  # each member records its own


@pytest.mark.slow
def test_a_member_with_a_nan_loss_fails_alone(reference, tmp_path, monkeypatch):
    study, copy = _packed_copy(reference, tmp_path)
    real = loop.train_step

    def diverge_at_lr_1e3(cfg, model, net, optimizer, batch, state, *args, **kwargs):
        if cfg.lr == 1e-3 and state.step == 2:  # epoch 2 (two steps per epoch)
            with torch.no_grad():
                model.logit_scale.fill_(float("nan"))
        return real(cfg, model, net, optimizer, batch, state, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", diverge_at_lr_1e3)
    outcome = run_study(study, copy, "debug")
    cleans = study.plan.of_kind("clean")
    failed = [n for n in cleans if n.id in outcome.failed]
    assert [n.identity["lr"] for n in failed] == [1e-3]
    status = copy.run_dir(failed[0]).status()
    assert status["state"] == "failed" and "loss is nan at epoch 2" in status["error"]
    assert [r["epoch"] for r in _rows(copy, failed[0]) if r["metric"] == "top1"] == [0, 1]
    for node in cleans:
        if node not in failed:
            assert copy.run_dir(node).status()["state"] == "done"
            assert _rows(copy, node) == _rows(reference[1], node)
    monkeypatch.setattr(loop, "train_step", real)
    again = run_study(study, copy, "debug")  # the failed point alone: resumed from epoch 1
    assert again.ran == [failed[0].id]
    assert copy.run_dir(failed[0]).status()["packed_with"] is None
    assert _rows(copy, failed[0]) == _rows(reference[1], failed[0])


@pytest.mark.slow
def test_a_killed_pack_resumes_every_member(reference, tmp_path, monkeypatch):
    """Killed right after the first member saved epoch 2 (the others are one epoch behind):
    the rerun resumes each member from its own last.pt and ends with the unpacked rows."""
    study, copy = _packed_copy(reference, tmp_path)
    original = recorder.save_checkpoint

    class Killed(BaseException):
        pass

    def kill_after_first_epoch_two(path, payload):
        original(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(recorder, "save_checkpoint", kill_after_first_epoch_two)
    with pytest.raises(Killed):
        run_study(study, copy, "debug")
    monkeypatch.setattr(recorder, "save_checkpoint", original)
    cleans = study.plan.of_kind("clean")
    assert all(copy.run_dir(n).status()["state"] == "running" for n in cleans)
    outcome = run_study(study, copy, "debug")
    assert sorted(outcome.ran) == sorted(n.id for n in cleans)
    logs = [copy.run_dir(n).log_file.read_text() for n in cleans]
    assert sum("resuming after epoch 2" in log for log in logs) == 1
    assert sum("resuming after epoch 1" in log for log in logs) == 2
    for node in cleans:
        assert _rows(copy, node) == _rows(reference[1], node)


@pytest.mark.slow
def test_one_more_learning_rate_runs_only_the_new_point(reference, tmp_path):
    study, workspace = reference
    copy = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.root, copy.root)
    path = tmp_path / "spec.toml"
    head = open(study.plan.spec_path).read().split("[clean]")[0]
    path.write_text(_spec(head, 4, "[1e-5, 1e-4, 1e-3, 3e-4]"))
    bigger = open_study(path)
    outcome = run_study(bigger, copy, "debug")
    assert [bigger.plan.nodes[i].identity["lr"] for i in outcome.ran] == [3e-4]


@pytest.mark.slow
def test_a_pack_too_large_for_memory_is_refused_naming_run_pack(reference, tmp_path,
                                                                monkeypatch):
    study, copy = _packed_copy(reference, tmp_path)
    monkeypatch.setattr(packed, "available_memory", lambda device: 1000)
    outcome = run_study(study, copy, "debug")
    cleans = study.plan.of_kind("clean")
    assert sorted(outcome.failed) == sorted(n.id for n in cleans)
    error = copy.run_dir(cleans[0]).status()["error"]
    assert error.startswith("run.pack = 3: 3 packed models")
    assert "lower run.pack" in error


def test_packs_group_only_siblings_that_share_their_inputs(write_spec, base_spec):
    text = _spec(base_spec, 2).replace("lr = [1e-5, 1e-4, 1e-3]",
                                       "lr = [1e-5, 1e-4, 1e-3]\nbatch_size = [16, 32]")
    text = text.replace("batch_size = 32\n", "")
    cleans = open_study(write_spec(text)).plan.of_kind("clean")
    jobs = packs(cleans, 2)
    assert sorted(len(job) for job in jobs) == [1, 1, 2, 2]
    for job in jobs:
        assert len({n.identity["batch_size"] for n in job}) == 1
        assert len({n.identity["lr"] for n in job}) == len(job)
    assert [len(job) for job in packs(cleans, 1)] == [1] * 6


def _assert_close(got: list[dict], want: list[dict]) -> None:
    """The same rows, losses to 1e-6 relative and accuracies to one image: the reference ran
    inside this pytest process and, after the whole suite, its losses differed from the child
    process's in the 8th digit (cause not found; the in-process packed test stays exact)."""
    assert [{k: v for k, v in r.items() if k != "value"} for r in got] == \
        [{k: v for k, v in r.items() if k != "value"} for r in want]
    for g, w in zip(got, want):
        tolerance = 1.0 / w["n"] + 1e-9 if w["split"] == "eval" else 1e-6 * abs(w["value"])
        assert abs(g["value"] - w["value"]) <= tolerance, (g, w)


@pytest.mark.slow
def test_the_local_executor_runs_a_pack_in_one_child_process(reference, tmp_path):
    study, copy = _packed_copy(reference, tmp_path)
    outcome = run_study(study, copy, "local")
    cleans = study.plan.of_kind("clean")
    assert sorted(outcome.ran) == sorted(n.id for n in cleans) and not outcome.failed
    assert len({copy.run_dir(n).status()["pid"] for n in cleans}) == 1
    for node in cleans:
        _assert_close(_rows(copy, node), _rows(reference[1], node))
    ingest_study(study, copy)
    con = duckdb.connect(str(copy.db_path), read_only=True)
    load.load(con, [study.plan.study])
    table = queries.run_table(con)
    packed_runs = {kind: sorted(table[table["kind"] == kind]["packed"].fillna(0).astype(int))
                   for kind in set(table["kind"])}
    assert packed_runs == {"poison": [0], "pretrain": [0], "select": [0], "clean": [3, 3, 3]}


@pytest.mark.slow
def test_plan_counts_the_packed_jobs_of_pending_nodes(reference, tmp_path):
    study, copy = _packed_copy(reference, tmp_path)
    shown = CliRunner().invoke(app, ["plan", study.plan.spec_path, "-w", str(copy.root)])
    assert shown.exit_code == 0, shown.output
    assert "packed: 3 pending nodes in 1 job (run.pack = 3)" in " ".join(shown.output.split())
    as_json = CliRunner().invoke(app, ["plan", study.plan.spec_path, "-w", str(reference[1].root),
                                       "--json"])
    assert json.loads(as_json.output)["packing"] == {"packed_jobs": 0, "packed_nodes": 0}
