"""The workspace on disk: one folder per run, written atomically by whoever runs the node.

    <workspace>/runs/<kind>-<id12>/node.json status.json metrics.parquet log.txt checkpoints/
    <workspace>/xspec.duckdb            (the CLI process only)
    <workspace>/reports/<study>/index.html
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from xspec.errors import XspecError
from xspec.spec.base import full_dump
from xspec.store.processes import gone, here, pid_alive
from xspec.store.reuse import check_reuse

STATES = ("pending", "queued", "running", "done", "failed")
SELECTED_PATHS = ("checkpoint", "optimizer")  # the keys of selected.json holding a path


def read_json_file(path: Path, what: str) -> dict:
    """A JSON file the workspace wrote; a missing, truncated or garbled one raises an
    `XspecError` naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise XspecError(f"{path} ({what}) is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise XspecError(f"{path} ({what}) is unreadable (truncated or garbled: "
                         f"{str(exc)[:80]})") from None


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
        return read_json_file(self.node_file, "the node's record")

    def status(self) -> dict:
        """status.json; an unreadable one makes the node failed, naming the file, and a done
        node whose metrics.parquet is gone or changed is failed too: never done with rows lost
        (`xspec run` runs a failed node again)."""
        try:
            status = json.loads(self.status_file.read_text())
            if not isinstance(status, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return {"state": "pending"}
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            why = "empty" if self.status_file.exists() and not self.status_file.stat().st_size \
                else f"not JSON: {str(exc)[:80]}"
            return {"state": "failed", "unreadable": True,
                    "error": f"{self.status_file} is unreadable ({why}); `xspec run` runs the "
                             "node again"}
        if status.get("state") == "done" and "metrics_bytes" in status:
            problem = self._metrics_problem(status["metrics_bytes"])
            if problem:
                return {**status, "state": "failed", "error": problem}
        return status

    def _metrics_problem(self, expected: int) -> str | None:
        try:
            size = self.metrics_file.stat().st_size
        except FileNotFoundError:
            return (f"{self.metrics_file} is missing (deleted?): the node's results are lost; "
                    "`xspec run` computes them again")
        if size != expected:
            return (f"{self.metrics_file} changed since the node finished ({size} bytes, not "
                    f"{expected}): corrupt? `xspec run` computes the node again")
        return None

    def set_status(self, state: str, **extra) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        current = self.status()
        if current.pop("unreadable", False):
            current = {}
        if state == "done" and self.metrics_file.exists():
            extra["metrics_bytes"] = self.metrics_file.stat().st_size
        elif state != "done":
            current.pop("metrics_bytes", None)
        current.update(extra, state=state, updated=time.time())
        data = (json.dumps(current, indent=2, sort_keys=True) + "\n").encode()
        try:
            atomic_write_bytes(self.status_file, data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not self.status_file.exists():
                raise
            # A full disk: overwrite the small file in place, so that a failure is recorded.
            with open(self.status_file, "r+b") as handle:
                handle.write(data)
                handle.truncate()

    def alive_elsewhere(self) -> bool:
        """Started by, or running in, a process on this host that still exists (e.g. another
        `xspec run` that queued it, or an orphaned worker)."""
        status = self.status()
        if status.get("host") != here():
            return False
        if status.get("state") == "queued":
            return status.get("owner") != os.getpid() and pid_alive(status.get("owner"))
        return (status.get("state") == "running" and status.get("pid") != os.getpid()
                and not gone(status))

    def write_selected(self, value: dict) -> None:
        """selected.json, with its checkpoint paths relative to the workspace: a moved or
        copied workspace reads its own checkpoints, never the original's."""
        root = self.path.parent.parent
        atomic_write_json(self.path / "selected.json", {
            k: os.path.relpath(v, root) if k in SELECTED_PATHS and v and os.path.isabs(v)
            and Path(v).is_relative_to(root) else v for k, v in value.items()})

    def read_selected(self) -> dict:
        """selected.json with its paths made absolute in this workspace; a path written by an
        older xspec (absolute, into some workspace's runs/) is taken as the same file here."""
        chosen = read_json_file(self.path / "selected.json", "the selected checkpoint")
        root = self.path.parent.parent
        for key in SELECTED_PATHS:
            value = chosen.get(key)
            if value and not os.path.isabs(value):
                chosen[key] = str(root / value)
            elif value and "runs" in Path(value).parts[:-2]:
                parts = Path(value).parts
                last = len(parts) - 1 - parts[::-1].index("runs")
                chosen[key] = str(root.joinpath(*parts[last:]))
        return chosen

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
        """Create the node's folder and write node.json (idempotent); a folder whose node.json
        is another config's is refused (`xspec.store.reuse`)."""
        run = self.run_dir(node)
        try:
            fresh = json.loads(run.node_file.read_text()).get("id") != node.id
        except (OSError, ValueError, AttributeError):  # missing, truncated or garbled
            fresh = True
        if fresh or check_reuse(run, node):
            atomic_write_json(run.node_file, node_record(node))
        return run

    def check_reuse(self, plan) -> None:
        """Refuse to run a plan any of whose existing run folders holds another config."""
        for node in plan.ordered():
            run = self.run_dir(node)
            if run.node_file.exists() and check_reuse(run, node):
                atomic_write_json(run.node_file, node_record(node))

    def state(self, node) -> str:
        return self.run_dir(node).status().get("state", "pending")


def node_record(node) -> dict:
    """node.json: the node, with its config's full dump (every field, defaults included)."""
    return {"id": node.id, "kind": node.kind, "name": node.name, "run_name": node.run_name,
            "config": full_dump(node.config), "deps": list(node.deps), "dep_runs": list(node.dep_runs),
            "dep_kinds": list(node.dep_kinds),
            "lineage": node.lineage}
