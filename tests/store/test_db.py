"""DuckDB store: idempotent ingestion, and a clear message when another process holds it."""

import subprocess
import sys

import pytest

from xspec.errors import WorkspaceBusy
from xspec.store.db import connect
from xspec.store.schema import MIGRATIONS
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
        with pytest.raises(WorkspaceBusy, match=r"workspace busy: .* is held by PID \d+ "):
            with connect(path, wait=0.3):
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


def _hold(path, seconds: float, read_only: bool = False) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=sys.argv[3] == '1');"
        " print('ready', flush=True); time.sleep(float(sys.argv[2]))"), str(path), str(seconds),
        "1" if read_only else "0"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_writer_waits_for_a_reader_to_let_go(tmp_path):
    """The end-of-run ingest outlasts a notebook that holds xspec.results() for a while."""
    path = tmp_path / "xspec.duckdb"
    with connect(path):
        pass
    holder = _hold(path, 1.5, read_only=True)
    try:
        with connect(path, wait=60) as con:
            assert con.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    finally:
        holder.kill()
        holder.wait()


def test_report_reader_waits_for_a_writer(tmp_path):
    from xspec.reports.load import open_store

    path = tmp_path / "xspec.duckdb"
    with connect(path):
        pass
    holder = _hold(path, 1.5)
    try:
        con = open_store(path)
        assert con.execute("SELECT count(*) FROM nodes").fetchone() == (0,)
        con.close()
    finally:
        holder.kill()
        holder.wait()


def _tables(path) -> set[str]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()


def test_half_created_database_is_completed(tmp_path):
    """What xspec before per-migration transactions left when killed between two statements."""
    import duckdb

    path = tmp_path / "xspec.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY)")
    con.execute("CREATE TABLE studies (name VARCHAR PRIMARY KEY, spec_path VARCHAR, spec JSON,"
                " updated TIMESTAMP)")
    con.close()
    with connect(path) as con:
        assert con.execute("SELECT list(number ORDER BY number) FROM _migrations"
                           ).fetchone()[0] == sorted(MIGRATIONS)
        assert "detail" in {row[0] for row in con.execute("DESCRIBE nodes").fetchall()}
    assert {"studies", "nodes", "metrics", "checkpoints"} <= _tables(path)


KILL_MID_MIGRATION = """
import os, signal, sys
from xspec.store import schema
first = schema.MIGRATIONS[1]
def killed(con):
    first(con)
    os.kill(os.getpid(), signal.SIGKILL)  # after the CREATEs, before the migration is recorded
schema.MIGRATIONS[1] = killed
from xspec.store.db import connect
from xspec.store.schema import MIGRATIONS
with connect(sys.argv[1]):
    pass
"""


def test_kill_during_first_migration_leaves_a_usable_database(tmp_path):
    path = tmp_path / "xspec.duckdb"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_MIGRATION, str(path)])
    assert proc.returncode == -9
    with connect(path) as con:
        assert con.execute("SELECT count(*) FROM _migrations").fetchone() == (len(MIGRATIONS),)
        con.execute("INSERT INTO studies VALUES ('s', 'p', '{}', now())")


def test_eval_set_migration_names_the_set_of_existing_rows(tmp_path):
    """Rows ingested before migration 3 get their set from the split; other rows none."""
    import duckdb

    path = tmp_path / "xspec.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY)")
    MIGRATIONS[1](con)
    MIGRATIONS[2](con)
    con.execute("INSERT INTO _migrations VALUES (1), (2)")
    con.execute("INSERT INTO metrics VALUES ('a', 1, 'eval', 'top1', 0.5, 10, 1), "
                "('a', 1, 'eval:shoes', 'top1', 0.4, 5, 1), "
                "('a', 1, 'retrieval:coco', 'i2t_r1', 0.3, 5, 1), "
                "('a', 1, 'train', 'loss', 2, 1, 1)")
    con.close()
    with connect(path) as con:
        rows = con.execute("SELECT split, eval_set FROM metrics ORDER BY split").fetchall()
    assert rows == [("eval", "eval"), ("eval:shoes", "shoes"), ("retrieval:coco", "coco"),
                    ("train", None)]
