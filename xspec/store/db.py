"""DuckDB: ingest per-run files into `xspec.duckdb`, in one transaction, idempotently."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb

from xspec.errors import WorkspaceBusy
from xspec.store.schema import migrate
from xspec.store.workspace import Workspace, node_record


@contextlib.contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WorkspaceBusy(
                f"workspace busy: another xspec process has {path} open; wait for it to finish"
            ) from None
        raise
    try:
        if not read_only:
            migrate(con)
        yield con
    finally:
        con.close()


def ingest(workspace: Workspace, plan) -> int:
    """Load the status and metrics of every node of `plan` into the database; returns row count."""
    runs = [(node, workspace.run_dir(node)) for node in plan.ordered()]
    metric_files = [str(run.metrics_file) for _, run in runs if run.metrics_file.exists()]
    with connect(workspace.db_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            "INSERT OR REPLACE INTO studies VALUES (?, ?, ?, now())",
            [plan.study, plan.spec_path, json.dumps({"varying": plan.varying})],
        )
        con.execute("DELETE FROM nodes WHERE study = ?", [plan.study])
        for node, run in runs:
            status = run.status()
            record = node_record(node)
            con.execute(
                "INSERT INTO nodes (study, id, kind, name, config, deps, lineage, status, error,"
                " updated, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
                [plan.study, node.id, node.kind, node.name, json.dumps(record["config"]),
                 json.dumps(record["deps"]), json.dumps(record["lineage"]),
                 status.get("state", "pending"), status.get("error"), json.dumps(status)],
            )
        ids = [node.id for node, _ in runs]
        con.execute("DELETE FROM metrics WHERE list_contains(?, node_id)", [ids])
        if metric_files:
            con.execute(
                "INSERT INTO metrics SELECT node_id, epoch, split, metric, value, n, step "
                "FROM read_parquet(?)",
                [metric_files],
            )
        con.execute("DELETE FROM checkpoints WHERE list_contains(?, node_id)", [ids])
        for node, run in runs:
            for ckpt in sorted(run.checkpoints.glob("epoch_*.pt")):
                con.execute("INSERT INTO checkpoints VALUES (?, ?, ?)",
                            [node.id, int(ckpt.stem.split("_")[1]), str(ckpt)])
        con.execute("COMMIT")
        return con.execute(
            "SELECT count(*) FROM metrics WHERE list_contains(?, node_id)", [ids]
        ).fetchone()[0]
