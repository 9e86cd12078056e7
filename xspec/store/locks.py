"""Per-node claims, so two `xspec run` of one workspace never run a node twice.

A claim is `<run dir>/lock.json`, written whole to a file of its own and then hard-linked to
that name (link fails if it exists: atomic on local disks and on NFS, where POSIX `flock` and
DuckDB's locks are not reliable), so a claim never exists without its content; an empty or
garbled lock.json holds no claim and is broken, saying so. It holds who claimed the node:
host, pid (the claiming `xspec` process), the worker's pid once one runs, and when. While held,
a thread touches it every HEARTBEAT_S seconds. A claim is stale, and may be broken, when
- it is from this host and none of its processes is alive (a killed `xspec run`), or
- it is from another host and has not been touched for STALE_S seconds (a dead machine).
- it is from this SLURM job (a requeued job finds its own earlier attempt's claim).
A claim of another host dated more than SKEW_S seconds in the future is an error (`ClockSkew`)
naming the clocks, not a wait of a day.
Breaking renames the stale file away first, so of two processes breaking it only one wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from xspec.store.processes import pid_alive
from xspec.errors import XspecError

HEARTBEAT_S = float(os.environ.get("XSPEC_LOCK_HEARTBEAT", 30))
STALE_S = float(os.environ.get("XSPEC_LOCK_STALE", 600))
SKEW_S = float(os.environ.get("XSPEC_CLOCK_SKEW", 300))  # most a claim may be in our future
LOCK_NAME = "lock.json"


class ClockSkew(XspecError):
    """Another host's claim is dated further in the future than clocks may differ."""


def slurm_job() -> str | None:
    """This process's SLURM job (array task) id, kept across requeues; None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def describe(holder: dict) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0)))
    who = f"pid {holder.get('pid')} on {holder.get('host')}"
    if holder.get("worker"):
        who += f" (worker pid {holder['worker']})"
    if holder.get("job"):
        who += f" (SLURM job {holder['job']})"
    return f"{who} since {since}"


@dataclass
class Claim:
    path: Path
    content: dict
    _released: bool = field(default=False, repr=False)

    def set_worker(self, pid: int) -> None:
        """Record the worker process, so a claim outlives a killed `xspec run` whose worker
        still trains (its orphan keeps the node)."""
        self.content["worker"] = pid
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.content))
        os.replace(tmp, self.path)

    def release(self) -> None:
        if not self._released:
            self._released = True
            _HEARTBEAT.forget(self)
            with contextlib.suppress(FileNotFoundError):
                if _read(self.path).get("token") == self.content["token"]:
                    self.path.unlink()


class _Heartbeat:
    """One daemon thread per process touches every claim it holds."""

    def __init__(self):
        self.claims: set[Path] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def hold(self, claim: Claim) -> None:
        with self.lock:
            self.claims.add(claim.path)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, daemon=True,
                                               name="xspec-lock-heartbeat")
                self.thread.start()

    def forget(self, claim: Claim) -> None:
        with self.lock:
            self.claims.discard(claim.path)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self.lock:
                paths = list(self.claims)
            for path in paths:
                with contextlib.suppress(OSError):
                    os.utime(path)


_HEARTBEAT = _Heartbeat()


def _read(path: Path) -> dict:
    """The claim's content; {} for an empty or garbled file. A claim is written whole before
    it appears (`try_claim`), so such a file holds nothing and is broken as stale."""
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def holder(run_path: Path) -> dict | None:
    """Who holds the node's claim, or None when it is free or stale."""
    path = Path(run_path) / LOCK_NAME
    try:
        content, age = _read(path), time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    if not content.get("host"):
        return None  # empty or garbage (`try_claim` says so when it breaks it)
    if content.get("job") and content.get("job") == slurm_job():
        return None
    ahead = max(content.get("since", 0) if isinstance(content.get("since"), (int, float))
                else 0, path.stat().st_mtime) - time.time()
    if content.get("host") != os.uname().nodename and ahead > SKEW_S:
        raise ClockSkew(f"{path}: claimed by {content['host']} at a time {ahead:.0f} s ahead of "
                        f"this machine's clock (more than the {SKEW_S:.0f} s clocks may differ, "
                        "XSPEC_CLOCK_SKEW): fix the clocks (NTP), or delete the file if "
                        f"{content['host']} no longer runs the node")
    if content.get("host") == os.uname().nodename:
        alive = any(pid_alive(content.get(key)) for key in ("pid", "worker") if content.get(key))
        return content if alive and age < 10 * STALE_S else None
    return content if age < STALE_S else None


def try_claim(run_path: Path) -> Claim | dict:
    """Claim the node, or return the live holder's record (see `describe`)."""
    run_path = Path(run_path)
    run_path.mkdir(parents=True, exist_ok=True)
    path = run_path / LOCK_NAME
    content = {"host": os.uname().nodename, "pid": os.getpid(), "since": time.time(),
               "token": f"{os.uname().nodename}:{os.getpid()}:{time.time_ns()}:{id(path)}"}
    if slurm_job():
        content["job"] = slurm_job()
    # The claim is written whole to a file of our own, then linked to lock.json: link fails if
    # lock.json exists (atomic, on NFS too), and nobody ever sees an empty or half claim.
    draft = run_path / f".{LOCK_NAME}.{os.getpid()}.{time.time_ns()}.draft"
    draft.write_text(json.dumps(content))
    try:
        for _ in range(3):
            try:
                os.link(draft, path)
            except FileExistsError:
                seen = _read(path)
                current = holder(run_path)
                if current is not None:
                    return current
                _break(path, seen)
                continue
            claim = Claim(path, content)
            _HEARTBEAT.hold(claim)
            return claim
    finally:
        draft.unlink(missing_ok=True)
    return holder(run_path) or {"host": "?", "pid": "?", "since": time.time()}


def _break(path: Path, stale: dict) -> None:
    """Remove the stale claim `stale`; if someone claimed the node meanwhile, put theirs back."""
    if not stale.get("host"):
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            print(f"xspec: {path} was {'empty' if not size else 'unreadable'} (no claim in it); "
                  "breaking it", file=sys.stderr, flush=True)
    aside = path.with_name(f".{LOCK_NAME}.stale.{os.getpid()}.{time.time_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read(aside).get("token") != stale.get("token"):
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # a fresh claim taken between our read and rename
    aside.unlink(missing_ok=True)


@contextlib.contextmanager
def claimed(run_paths: list[Path], poll: float = 5.0):
    """Hold claims on the given run folders for the duration, waiting while another process
    holds one (what a SLURM job does before it runs its nodes)."""
    claims = []
    try:
        for run_path in run_paths:
            while isinstance(held := try_claim(run_path), dict):
                time.sleep(poll)
            claims.append(held)
        yield
    finally:
        for held in claims:
            held.release()
