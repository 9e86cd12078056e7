"""DuckDB: ingest per-run files into `xspec.duckdb`, in one transaction, idempotently."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from xspec.errors import WorkspaceBusy, XspecError
from xspec.store.provenance import ingest_provenance
from xspec.store.schema import EVAL_SET, migrate
from xspec.store.recorded import problem_line, study_runs
from xspec.store.workspace import Workspace


WAIT_SECONDS = float(os.environ.get("XSPEC_DB_WAIT", 300))
_HOLDER = re.compile(r"Conflicting lock is held in (\S+) \(PID (\d+)\)")


def _holder(exc: Exception) -> str:
    match = _HOLDER.search(str(exc))
    return f"PID {match.group(2)} ({os.path.basename(match.group(1))})" if match else \
        "another process"


def open_duckdb(path: Path, read_only: bool = False,
                wait: float | None = None) -> duckdb.DuckDBPyConnection:
    """Connect, waiting up to `wait` seconds (default XSPEC_DB_WAIT, 300) while another process
    holds the file (a notebook with `xspec.results()` open, a concurrent `xspec report`);
    then raise `WorkspaceBusy` naming the holder. Says once on stderr that it waits."""
    wait = WAIT_SECONDS if wait is None else wait
    deadline, said, delay = time.monotonic() + wait, False, 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            holder = _holder(exc)
            if time.monotonic() >= deadline:
                raise WorkspaceBusy(
                    f"workspace busy: {path} is held by {holder}; finished runs are kept in "
                    f"their run folders: close it (e.g. a notebook's xspec.results()) and run "
                    f"`xspec report` again") from None
            if not said and wait >= 2:
                print(f"xspec: waiting up to {wait:.0f} s for {holder} to release {path}",
                      file=sys.stderr, flush=True)
                said = True
            time.sleep(delay)
            delay = min(1.0, delay * 2)


@contextlib.contextmanager
def connect(path: Path, read_only: bool = False,
            wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_duckdb(path, read_only, wait)
    try:
        if not read_only:
            migrate(con)
        yield con
    finally:
        con.close()


def primary_set(records: list[dict]) -> str:
    """The name of the study's primary evaluation set (`evaluate.primary`), from its nodes'
    configs (the eval table of every node that evaluates)."""
    for record in records:
        evaluation = record["config"].get("eval") if isinstance(record["config"], dict) else None
        if isinstance(evaluation, dict):
            return evaluation.get("primary", "eval")
    return "eval"


def ingest(workspace: Workspace, plan) -> int:
    """Load the status and metrics of every node of `plan` into the database; returns row count.
    Nodes of other studies that `plan` takes inputs from belong to those studies' reports.

    The run folders are the truth and the database is derived: `plan` says which nodes are
    the study's, and each node's config, lineage and dependencies come from its run folder's
    node.json (what it ran with, though the spec or a default changed since;
    `xspec.store.recorded`); a node.json that is unreadable is named on stderr, and the node's
    status and metrics are kept. A damaged xspec.duckdb is moved aside and built again from
    the run folders (saying so); a metrics file that cannot be read is left out, naming it (its
    node shows failed when it was done: `RunDir.status`)."""
    runs = study_runs(workspace, plan)
    for entry in runs:
        if entry.problem is not None:
            print(f"xspec: {problem_line(entry)}", file=sys.stderr, flush=True)
    metric_files = _readable([e.run.metrics_file for e in runs if e.run.metrics_file.exists()])
    try:
        return _ingest(workspace, plan, runs, metric_files)
    except duckdb.Error as exc:
        if not damaged(exc):
            raise unusable(workspace.db_path, exc) from None
        set_aside(workspace.db_path, exc)
        return _ingest(workspace, plan, runs, metric_files)


def _readable(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        try:
            pq.read_metadata(path)
        except (pa.ArrowException, OSError) as exc:
            print(f"xspec: left out {path}: unreadable ({str(exc)[:100]}); `xspec run` computes "
                  "its node again", file=sys.stderr, flush=True)
            continue
        found.append(str(path))
    return found


def damaged(exc: Exception) -> bool:
    """A DuckDB error that means the file is damaged (not busy, not unwritable)."""
    text = str(exc).lower()
    kinds = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException,
             duckdb.FatalException)
    return (isinstance(exc, kinds) or "corrupt" in text) and not any(
        word in text for word in ("lock", "read-only", "permission denied", "no space left"))


def unusable(path: Path, exc: Exception) -> XspecError:
    text = str(exc)
    if "read-only" in text.lower() or "permission denied" in text.lower():
        return XspecError(f"{path}: cannot write the results database (read-only file system "
                          "or no permission); use a workspace you can write to (-w)")
    return XspecError(f"{path}: {text.splitlines()[0][:200]}")


def set_aside(path: Path, exc: Exception) -> None:
    """Move a damaged database (and its WAL) aside; the next connect starts an empty one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", ".wal"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    print(f"xspec: {path} was unreadable ({str(exc).splitlines()[0][:120]}); moved it to "
          f"{aside.name} and rebuilt it from the run folders (other studies' rows return when "
          "they are reported again)", file=sys.stderr, flush=True)


def _ingest(workspace: Workspace, plan, runs, metric_files: list[str]) -> int:
    with connect(workspace.db_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            "INSERT OR REPLACE INTO studies VALUES (?, ?, ?, now())",
            [plan.study, plan.spec_path, json.dumps({"varying": plan.varying,
                                                    "notes": plan.study_notes})],
        )
        con.execute("DELETE FROM nodes WHERE study = ?", [plan.study])
        for entry in runs:
            status = entry.run.status()
            detail = status if entry.problem is None else {**status,
                                                           "node_json": str(entry.problem)}
            record = entry.record
            con.execute(
                "INSERT INTO nodes (study, id, kind, name, config, deps, lineage, status, error,"
                " updated, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
                [plan.study, entry.node.id, record["kind"], entry.node.name,
                 json.dumps(record["config"]), json.dumps(record["deps"]),
                 json.dumps(record["lineage"]), status.get("state", "pending"),
                 status.get("error"), json.dumps(detail)],
            )
        ids = [entry.node.id for entry in runs]
        con.execute("DELETE FROM metrics WHERE list_contains(?, node_id)", [ids])
        if metric_files:
            con.execute(
                "INSERT INTO metrics (node_id, epoch, split, metric, value, n, step, eval_set) "
                "SELECT node_id, epoch, split, metric, value, n, step, "
                f"{EVAL_SET.format(primary='?')} FROM read_parquet(?)",
                [primary_set([entry.record for entry in runs]), metric_files],
            )
        con.execute("DELETE FROM checkpoints WHERE list_contains(?, node_id)", [ids])
        for entry in runs:
            for ckpt in sorted(entry.run.checkpoints.glob("epoch_*.pt")):
                con.execute("INSERT INTO checkpoints VALUES (?, ?, ?)",
                            [entry.node.id, int(ckpt.stem.split("_")[1]), str(ckpt)])
        ingest_provenance(con, [(entry.node, entry.run) for entry in runs])
        con.execute("COMMIT")
        return con.execute(
            "SELECT count(*) FROM metrics WHERE list_contains(?, node_id)", [ids]
        ).fetchone()[0]
