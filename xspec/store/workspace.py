"""The workspace on disk: one folder per run, written atomically by whoever runs the node.

    <workspace>/runs/<kind>-<id12>/node.json status.json metrics.parquet log.txt checkpoints/
    <workspace>/xspec.duckdb            (the CLI process only)
    <workspace>/reports/<study>/index.html
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from xspec.errors import XspecError
from xspec.store.processes import gone, here

STATES = ("pending", "queued", "running", "done", "failed")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, value) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def node_file(self) -> Path:
        return self.path / "node.json"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.parquet"

    @property
    def log_file(self) -> Path:
        return self.path / "log.txt"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def read_node(self) -> dict:
        return json.loads(self.node_file.read_text())

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except FileNotFoundError:
            return {"state": "pending"}

    def set_status(self, state: str, **extra) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        current = self.status()
        current.update(extra, state=state, updated=time.time())
        atomic_write_json(self.status_file, current)

    def alive_elsewhere(self) -> bool:
        """Running in a process on this host that still exists (e.g. an orphaned worker)."""
        status = self.status()
        return (status.get("state") == "running" and status.get("host") == here()
                and status.get("pid") != os.getpid() and not gone(status))

    @property
    def done(self) -> bool:
        return self.status().get("state") == "done"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch}.pt"

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = sorted(
            (int(p.stem.split("_")[1]), p) for p in self.checkpoints.glob("epoch_*.pt")
        )
        return found[-1] if found else None


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def db_path(self) -> Path:
        return self.root / "xspec.duckdb"

    def report_dir(self, study: str) -> Path:
        return self.root / "reports" / study

    def run_dir(self, node) -> RunDir:
        return RunDir(self.runs / node.run_name)

    def ensure_writable(self, min_free_mb: int = 200) -> None:
        """Fail before any training when the workspace cannot take checkpoints."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-probe-") as probe:
                probe.write(b"x")
                probe.flush()
        except OSError as exc:
            raise XspecError(f"workspace {self.root} is not writable: {exc.strerror}") from None
        free_mb = shutil.disk_usage(self.root).free // 2**20
        if free_mb < min_free_mb:
            raise XspecError(f"workspace {self.root} has only {free_mb} MB free; checkpoints "
                             f"need more (at least {min_free_mb} MB)")

    def prepare(self, node) -> RunDir:
        """Create the node's folder and write node.json (idempotent)."""
        run = self.run_dir(node)
        if not run.node_file.exists():
            atomic_write_json(run.node_file, node_record(node))
        return run

    def state(self, node) -> str:
        return self.run_dir(node).status().get("state", "pending")


def node_record(node) -> dict:
    return {"id": node.id, "kind": node.kind, "name": node.name, "run_name": node.run_name,
            "config": node.config, "deps": list(node.deps), "dep_runs": list(node.dep_runs),
            "dep_kinds": list(node.dep_kinds),
            "lineage": node.lineage}
