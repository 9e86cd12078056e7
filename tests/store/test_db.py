"""DuckDB store: idempotent ingestion, and a clear message when another process holds it."""

import subprocess
import sys

import pytest

from xspec.errors import WorkspaceBusy
from xspec.store.db import connect
from xspec.store.workspace import Workspace, atomic_write_json


def test_second_writer_gets_workspace_busy(tmp_path):
    path = tmp_path / "xspec.duckdb"
    with connect(path):
        pass
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('ready', flush=True);"
        " time.sleep(30)"), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WorkspaceBusy, match="workspace busy: another xspec process"):
            with connect(path):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    atomic_write_json(target, {"state": "done"})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        atomic_write_json(target, {"state": "half"})
    assert target.read_text().strip().startswith("{") and '"done"' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_unwritable_workspace_is_a_clear_error(tmp_path):
    from xspec.errors import XspecError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(XspecError, match="is not writable"):
        Workspace(blocker / "ws").ensure_writable()
