"""Two `xspec run` of one workspace never run a node twice: each node is claimed through an
O_EXCL lock file (NFS-safe) naming its holder; the other process waits for its result."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from xspec.executors.debug import DebugExecutor
from xspec.executors.local import LocalExecutor
from xspec.runtime import node
from xspec.store import locks
from xspec.store.workspace import Workspace
from xspec.study import open_study


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claim_is_exclusive_until_released(tmp_path):
    first = locks.try_claim(tmp_path / "run")
    assert isinstance(first, locks.Claim)
    held = locks.try_claim(tmp_path / "run")
    assert held["pid"] == os.getpid() and held["host"] == os.uname().nodename
    assert locks.describe(held).startswith(f"pid {os.getpid()} on {os.uname().nodename} since ")
    first.release()
    assert isinstance(locks.try_claim(tmp_path / "run"), locks.Claim)


def test_a_dead_holder_on_this_host_is_stale(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "lock.json").write_text(json.dumps(
        {"host": os.uname().nodename, "pid": _dead_pid(), "since": time.time(), "token": "x"}))
    assert locks.holder(tmp_path / "run") is None
    claim = locks.try_claim(tmp_path / "run")
    assert isinstance(claim, locks.Claim)
    assert json.loads((tmp_path / "run" / "lock.json").read_text())["pid"] == os.getpid()


def test_another_hosts_claim_is_stale_only_when_its_heartbeat_stops(tmp_path):
    path = tmp_path / "run" / "lock.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": time.time(), "token": "y"}))
    assert locks.try_claim(tmp_path / "run")["host"] == "elsewhere"
    old = time.time() - locks.STALE_S - 5
    os.utime(path, (old, old))
    assert isinstance(locks.try_claim(tmp_path / "run"), locks.Claim)


def _fake_stages(monkeypatch, log):
    lock = threading.Lock()

    def fake(ctx):
        with lock:
            with open(log, "a") as handle:
                handle.write(ctx.node["id"] + "\n")
        time.sleep(0.2)

    monkeypatch.setattr(node, "stage_of", lambda kind: fake)


def test_two_executors_at_once_run_each_node_once(write_spec, base_spec, tmp_path, monkeypatch):
    study = open_study(write_spec(base_spec))
    workspace = Workspace(tmp_path / "ws")
    log = tmp_path / "ran.txt"
    _fake_stages(monkeypatch, log)
    outcomes = [None, None]

    def run(i):
        outcomes[i] = DebugExecutor().submit(study.plan, workspace, {"device": "cpu"})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ran = log.read_text().split()
    assert sorted(ran) == sorted(study.plan.nodes), "a node ran twice or not at all"
    assert sorted(outcomes[0].ran + outcomes[1].ran) == sorted(study.plan.nodes)
    assert all(workspace.state(node) == "done" for node in study.plan.nodes.values())
    assert not list(workspace.runs.glob("*/lock.json"))


def test_the_debug_executor_leaves_its_callers_thread_count_alone(write_spec, base_spec, tmp_path,
                                                                   monkeypatch):
    """A node with loader workers runs on fewer compute threads; in-process runs must not
    leave that behind (later in-process runs then summed floats in another order)."""
    import torch

    study = open_study(write_spec(base_spec))
    _fake_stages(monkeypatch, tmp_path / "ran.txt")
    before = torch.get_num_threads()
    try:
        DebugExecutor().submit(study.plan, Workspace(tmp_path / "ws"),
                               {"device": "cpu", "threads": before + 1})
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


class Told:
    def __init__(self):
        self.waited = []

    def started(self, node, total):
        raise AssertionError(f"started {node.name}, which another process holds")

    def advanced(self, node, progress):
        pass

    def finished(self, node, state, reason):
        pass

    def waiting(self, node, holder):
        self.waited.append((node.kind, holder))


HOLDER = """
import json, os, sys, time
run = sys.argv[1]
with open(os.path.join(run, "lock.json"), "x") as f:
    json.dump({"host": os.uname().nodename, "pid": os.getpid(), "since": time.time()}, f)
print("held", flush=True)
time.sleep(1.5)
with open(os.path.join(run, "status.json"), "w") as f:
    json.dump({"state": "done"}, f)
os.unlink(os.path.join(run, "lock.json"))
"""


def test_local_executor_waits_for_a_node_another_process_holds(write_spec, base_spec, tmp_path):
    study = open_study(write_spec(base_spec))
    workspace = Workspace(tmp_path / "ws")
    poison, *rest = study.plan.ordered()
    for node in rest:
        workspace.prepare(node).set_status("done")
    run = workspace.run_dir(poison)
    run.path.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    told = Told()
    outcome = LocalExecutor().submit(study.plan, workspace, {"device": "cpu"}, reporter=told)
    holder.wait()
    assert outcome.ran == [] and poison.id in outcome.skipped and not outcome.failed
    assert told.waited == [("poison", pytest.approx(told.waited[0][1]))]
    assert f"pid {holder.pid} on {os.uname().nodename}" in told.waited[0][1]


def test_a_requeued_slurm_job_takes_over_its_own_claim(tmp_path, monkeypatch):
    path = tmp_path / "run" / "lock.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "node-a", "pid": 1, "since": time.time(), "token": "z",
                                "job": "77_3"}))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    held = locks.try_claim(tmp_path / "run")
    assert held["job"] == "77_3" and "(SLURM job 77_3)" in locks.describe(held)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")  # the same task, requeued on another node
    claim = locks.try_claim(tmp_path / "run")
    assert isinstance(claim, locks.Claim) and claim.content["job"] == "77_3"


def test_status_says_who_holds_a_node(write_spec, base_spec, tmp_path):
    from typer.testing import CliRunner

    from xspec.cli import app

    spec = write_spec(base_spec)
    workspace = Workspace(tmp_path / "ws")
    first = open_study(spec).plan.ordered()[0]
    held = locks.try_claim(workspace.run_dir(first).path)
    try:
        result = CliRunner().invoke(app, ["status", str(spec), "-w", str(workspace.root)])
    finally:
        held.release()
    cells = "".join(c for c in result.output if not c.isspace() and c not in "│┃")
    assert f"claimedbypid{os.getpid()}on{os.uname().nodename}since" in cells
