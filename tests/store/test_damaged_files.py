"""Files of a workspace that are missing, empty, garbled or truncated (issue 19): the run
folders are the truth, so a damaged file makes its node pending or failed with the file named,
the database is rebuilt, and a claim always holds its content."""

import errno
import json
import os
import shutil
import time

import duckdb
import pytest

from xspec.errors import XspecError
from xspec.executors.base import claim
from xspec.store import locks
from xspec.store.db import ingest
from xspec.store.workspace import RunDir, Workspace, atomic_write_json
from xspec.study import open_study


@pytest.fixture
def study(write_spec, base_spec):
    return open_study(write_spec(base_spec))


@pytest.mark.parametrize("content, why", [(b"", "empty"), (b"{\"state\": \"do", "not JSON")])
def test_an_empty_or_garbled_status_json_is_a_failed_node_naming_the_file(tmp_path, content,
                                                                          why):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.status_file.write_bytes(content)
    status = run.status()
    assert status["state"] == "failed"
    assert status["error"].startswith(f"{run.status_file} is unreadable ({why}")
    run.set_status("queued")
    assert set(run.status()) == {"state", "updated"}


def test_a_done_node_whose_metrics_are_deleted_or_changed_is_failed_not_done(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.metrics_file.write_bytes(b"PAR1" + b"x" * 100)
    run.set_status("done")
    assert run.done
    run.metrics_file.write_bytes(b"PAR1" + b"x" * 50)
    assert run.status()["error"].startswith(f"{run.metrics_file} changed since the node finished")
    run.metrics_file.unlink()
    assert run.status()["state"] == "failed" and not run.done
    assert run.status()["error"] == (f"{run.metrics_file} is missing (deleted?): the node's "
                                     "results are lost; `xspec run` computes them again")


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage", b"[1, 2]"])
def test_an_empty_or_garbage_lock_is_broken_at_once_saying_so(tmp_path, content, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "lock.json").write_bytes(content)
    held = locks.try_claim(tmp_path / "run")
    assert isinstance(held, locks.Claim)
    assert json.loads((tmp_path / "run" / "lock.json").read_text())["pid"] == os.getpid()
    assert "(no claim in it); breaking it" in capsys.readouterr().err
    held.release()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []


def test_a_claim_appears_with_its_content(tmp_path, monkeypatch):
    seen = []
    link = os.link

    def watch(src, dst):
        seen.append(json.loads(open(src).read()))
        link(src, dst)

    monkeypatch.setattr(os, "link", watch)
    held = locks.try_claim(tmp_path / "run")
    assert seen and seen[0]["pid"] == os.getpid() and seen[0]["token"] == held.content["token"]
    held.release()


def test_a_claim_from_a_clock_far_ahead_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "lock.json"
    path.write_text(json.dumps({"host": "node-b", "pid": 1, "since": time.time() + 3600,
                                "token": "t"}))
    os.utime(path, (time.time() + 3600, time.time() + 3600))
    with pytest.raises(locks.ClockSkew) as info:
        locks.try_claim(tmp_path / "run")
    assert str(info.value).startswith(f"{path}: claimed by node-b at a time 3600 s ahead of this "
                                      "machine's clock (more than the 300 s clocks may differ")


def test_a_queued_node_whose_lock_was_deleted_is_not_started_twice(study, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    node = study.plan.of_kind("poison")[0]
    run = workspace.prepare(node)
    run.set_status("queued", owner=os.getppid(), host=os.uname().nodename)
    assert not (run.path / "lock.json").exists()
    assert claim(workspace, node, object(), set()) == "held"
    assert not (run.path / "lock.json").exists()


def test_selected_json_paths_are_relative_and_a_copied_workspace_reads_its_own(tmp_path):
    original = Workspace(tmp_path / "a")
    source, select = RunDir(original.runs / "pretrain-1"), RunDir(original.runs / "select-2")
    select.path.mkdir(parents=True)
    select.write_selected({"arch": "x", "epoch": 2, "checkpoint": str(source.checkpoint(2)),
                           "optimizer": None})
    assert json.loads((select.path / "selected.json").read_text())["checkpoint"] == \
        "runs/pretrain-1/checkpoints/epoch_2.pt"
    shutil.copytree(original.root, tmp_path / "b")
    copy = RunDir(tmp_path / "b" / "runs" / "select-2")
    assert copy.read_selected()["checkpoint"] == str(tmp_path / "b" / "runs" / "pretrain-1" /
                                                    "checkpoints" / "epoch_2.pt")
    # one written by an older xspec, with the original's absolute path
    atomic_write_json(copy.path / "selected.json", {"checkpoint": str(source.checkpoint(2))})
    assert copy.read_selected()["checkpoint"].startswith(str(tmp_path / "b" / "runs"))


def test_a_truncated_node_json_is_written_again_from_the_plan(study, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    node = study.plan.of_kind("poison")[0]
    run = workspace.prepare(node)
    run.node_file.write_text(run.node_file.read_text()[:20])
    with pytest.raises(XspecError, match=r"node.json \(the node's record\) is unreadable"):
        run.read_node()
    workspace.prepare(node)
    assert run.read_node()["id"] == node.id


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_a_damaged_database_is_rebuilt_from_the_run_folders(study, tmp_path, content, capsys):
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    workspace.db_path.write_bytes(content)
    ingest(workspace, study.plan)
    assert "rebuilt it from the run folders" in capsys.readouterr().err
    with duckdb.connect(str(workspace.db_path)) as con:
        assert con.execute("SELECT count(*) FROM nodes").fetchone()[0] == len(study.plan.own())
    assert len(list(workspace.root.glob("xspec.duckdb.damaged-*"))) == 1


def test_a_read_only_workspace_is_one_clear_error(study, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise duckdb.IOException('IO Error: Cannot open file "x": Read-only file system')

    monkeypatch.setattr(duckdb, "connect", refuse)
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(XspecError) as info:
        ingest(workspace, study.plan)
    assert str(info.value) == (f"{workspace.db_path}: cannot write the results database "
                               "(read-only file system or no permission); use a workspace you "
                               "can write to (-w)")


def test_a_full_disk_leaves_the_status_failed_with_the_reason(study, tmp_path, monkeypatch):
    import tempfile

    from xspec.errors import ExecutionError
    from xspec.runtime import node as node_module
    from xspec.store.workspace import node_record

    workspace = Workspace(tmp_path / "ws")
    node = study.plan.of_kind("poison")[0]
    run = workspace.prepare(node)
    real = tempfile.mkstemp

    def fill_disk(ctx):
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", kwargs.get("dir"))
        monkeypatch.setattr(tempfile, "mkstemp", full)
        atomic_write_json(ctx.run.path / "manifest.json", {"x": 1})

    monkeypatch.setattr(node_module, "stage_of", lambda kind: fill_disk)
    with pytest.raises(ExecutionError, match="no space left on the device"):
        node_module.execute_node(node_record(node), str(workspace.root), {"threads": 1})
    monkeypatch.setattr(tempfile, "mkstemp", real)
    status = run.status()
    assert status["state"] == "failed"
    assert status["error"].startswith(f"no space left on the device writing {run.path}")
