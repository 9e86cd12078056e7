"""kill -9 of a local run mid-epoch, then `xspec run` again: it resumes from the last
checkpoint, loses no epoch beyond the interrupted one and duplicates no metric row."""

import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from tests_support import mini_spec  # noqa: E402  (conftest puts tests/ on sys.path)

pytestmark = pytest.mark.slow

BODY = """
[pretrain]
objective = "mmcl+ssl"
epochs = 5
batch_size = 64
warmup_steps = 2
[run]
threads = 1
"""
SPEC = mini_spec('killme', BODY, train=2048, poisons=20)


def _xspec(*args, workspace):
    return subprocess.Popen([sys.executable, "-m", "xspec.cli", *args, "-w", str(workspace)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _pretrain_status(workspace):
    for path in workspace.glob("runs/pretrain-*/status.json"):
        return json.loads(path.read_text())
    return {}


def test_kill_9_mid_epoch_then_resume(tmp_path):
    spec, workspace = tmp_path / "kill.toml", tmp_path / "ws"
    spec.write_text(SPEC)
    first = _xspec("run", str(spec), workspace=workspace)
    deadline = time.time() + 180
    while _pretrain_status(workspace).get("epoch", 0) < 2:
        assert time.time() < deadline and first.poll() is None, first.stdout.read()
        time.sleep(0.3)
    time.sleep(0.5)  # somewhere inside epoch 3
    os.kill(_pretrain_status(workspace)["pid"], signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == 1
    assert _pretrain_status(workspace)["state"] == "failed"

    second = _xspec("run", str(spec), workspace=workspace)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    log = next(workspace.glob("runs/pretrain-*/log.txt")).read_text()
    assert "resuming after epoch 2" in log or "resuming after epoch 3" in log
    con = duckdb.connect(str(workspace / "xspec.duckdb"), read_only=True)
    rows = con.execute("""SELECT m.epoch, count(*) FROM metrics m JOIN nodes n ON n.id = m.node_id
        WHERE n.kind = 'pretrain' AND m.split = 'eval' AND m.metric = 'top1' GROUP BY 1
        ORDER BY 1""").fetchall()
    assert rows == [(e, 1) for e in range(1, 6)]
    dupes = con.execute("""SELECT count(*) FROM (SELECT node_id, epoch, split, metric FROM metrics
        GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0]
    assert dupes == 0
