"""Ingesting each run's `provenance.json` (written by `xspec.runtime.provenance`) into DuckDB,
and the question a report asks of it: did these rows come from the same code?"""

from __future__ import annotations

import datetime
import hashlib
import json

FILE = "provenance.json"
CODE_FIELDS = ("xspec_version", "git_commit", "git_dirty", "snapshot", "plugins")
COLUMNS = ("node_id", "code", "xspec_version", "git_commit", "git_dirty", "snapshot", "plugins",
           "python", "torch", "open_clip", "cuda", "cudnn", "device", "device_name",
           "device_count", "host", "started", "epoch_seconds", "previous")


def code_key(record: dict) -> str:
    """12 hex characters that differ exactly when the code that ran differs."""
    fields = {k: record.get(k) for k in CODE_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def read_record(run) -> dict | None:
    path = run.path / FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # written atomically; unreadable only when damaged by hand


def row(node_id: str, record: dict) -> list:
    started = record.get("started")
    return [node_id, code_key(record), *(record.get(k) for k in COLUMNS[2:6]),
            json.dumps(record.get("plugins") or {}),
            *(None if record.get(k) is None else str(record.get(k)) for k in COLUMNS[7:13]),
            record.get("device_name"), record.get("device_count"), record.get("host"),
            datetime.datetime.fromtimestamp(started) if started else None,
            json.dumps(record.get("epoch_seconds") or {}), json.dumps(record.get("previous") or [])]


def ingest_provenance(con, runs) -> None:
    """Replace the rows of these (node, run folder) pairs; runs not started have none."""
    ids = [node.id for node, _ in runs]
    con.execute("DELETE FROM provenance WHERE list_contains(?, node_id)", [ids])
    marks = ", ".join("?" * len(COLUMNS))
    for node, run in runs:
        record = read_record(run)
        if record is not None:
            con.execute(f"INSERT INTO provenance ({', '.join(COLUMNS)}) VALUES ({marks})",
                        row(node.id, record))


def code_versions(con, node_ids: list[str]) -> list[dict]:
    """The distinct code versions among these nodes, with how many of them ran each."""
    rows = con.execute(
        "SELECT code, any_value(xspec_version), any_value(git_commit), any_value(git_dirty), "
        "any_value(snapshot), count(*) FROM provenance WHERE list_contains(?, node_id) "
        "GROUP BY code ORDER BY count(*) DESC, code", [node_ids]).fetchall()
    keys = ("code", "xspec_version", "git_commit", "git_dirty", "snapshot", "runs")
    return [dict(zip(keys, r)) for r in rows]
