"""What code and machine produced a run: `provenance.json` in its run folder.

Written atomically when a node starts (and rewritten at every epoch's end with that epoch's wall
time), read into DuckDB's `provenance` table by `xspec.store.provenance`. It records:
- xspec's version, the git commit of the checkout it was imported from and a hash of that
  checkout's uncommitted changes (None when clean, or when xspec is not a git checkout), and the
  code snapshot it ran from (`xspec submit` freezes one, `xspec.executors.snapshot`);
- the sha256 of every file of the study's plugins;
- Python, torch, open_clip, CUDA and cuDNN versions, the device's name and count, the host;
- per-epoch wall times of training nodes.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import xspec
from xspec.spec.tables.settings import RunSettings
from xspec.store.workspace import RunDir, atomic_write_json

from xspec.store.provenance import FILE  # noqa: E402
SNAPSHOT_ENV = "XSPEC_SNAPSHOT"  # set by a job that imports xspec from a submit-time snapshot


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_files(path: Path) -> list[Path]:
    """A module file, or every .py file of a package folder, sorted."""
    path = Path(path)
    if path.name == "__init__.py":
        path = path.parent
    if path.is_dir():
        return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return [path]


def plugin_hashes(plugins: list[dict]) -> dict[str, str]:
    """{relative file name: sha256} of each plugin's files (a module on sys.path: its file)."""
    out: dict[str, str] = {}
    for plugin in plugins:
        where = plugin.get("path")
        if not where:
            module = sys.modules.get(plugin["name"]) or importlib.import_module(plugin["name"])
            where = getattr(module, "__file__", None)
        if not where:
            continue
        where = Path(where)
        base = where.parent.parent if where.name == "__init__.py" else where.parent
        for file in tree_files(Path(where)):
            out[f"{plugin['name']}:{file.relative_to(base)}"] = file_sha256(file)
    return out


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=20,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@lru_cache(maxsize=4)
def code_version(package_dir: str | None = None) -> dict:
    """xspec's version and, for a git checkout, its commit and a hash of uncommitted changes to
    tracked files plus the contents of untracked ones under the package."""
    package = Path(package_dir or Path(xspec.__file__).parent)
    info = {"xspec_version": getattr(xspec, "__version__", None), "git_commit": None,
            "git_dirty": None, "package_dir": str(package)}
    stamp = package / "SNAPSHOT.json"
    if stamp.is_file():  # a snapshot records the checkout it was taken from
        import json

        recorded = json.loads(stamp.read_text())
        info.update({k: recorded.get(k) for k in ("git_commit", "git_dirty")})
        return info
    top = _git(package, "rev-parse", "--show-toplevel")
    if top is None:
        return info
    root = Path(top.decode().strip())
    commit = _git(root, "rev-parse", "HEAD")
    info["git_commit"] = commit.decode().strip() if commit else None
    diff = _git(root, "diff", "HEAD", "--binary", "--", str(package)) or b""
    untracked = (_git(root, "ls-files", "--others", "--exclude-standard", "--", str(package))
                 or b"").decode().split()
    if diff or untracked:
        digest = hashlib.sha256(diff)
        for name in sorted(untracked):
            digest.update(name.encode() + b"\0" + (root / name).read_bytes())
        info["git_dirty"] = digest.hexdigest()
    return info


def machine(device, world: int = 1) -> dict:
    """Versions and the device of this process (torch is imported here, not by the module:
    `xspec submit` hashes code without it)."""
    import open_clip
    import torch

    cuda = device.type == "cuda" and torch.cuda.is_available()
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "open_clip": open_clip.__version__, "cuda": torch.version.cuda if cuda else None,
        "cudnn": (torch.backends.cudnn.version() if cuda else None),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor()
        or platform.machine(),
        "device_count": world, "host": socket.gethostname(),
    }


def collect(settings: RunSettings, device, world: int = 1) -> dict:
    return {**code_version(), "snapshot": os.environ.get(SNAPSHOT_ENV) or None,
            "plugins": plugin_hashes(settings.plugins), **machine(device, world),
            "started": time.time(), "epoch_seconds": {}}


def write(run: RunDir, record: dict) -> None:
    atomic_write_json(run.path / FILE, record)


def read(run: RunDir) -> dict | None:
    import json

    path = run.path / FILE
    return json.loads(path.read_text()) if path.is_file() else None


def add_epoch(run: RunDir, epoch: int, seconds: float) -> None:
    """Record one epoch's wall time (a resumed run keeps the earlier epochs' times)."""
    record = read(run)
    if record is None:
        return
    record.setdefault("epoch_seconds", {})[str(epoch)] = round(seconds, 3)
    write(run, record)


def start(run: RunDir, settings: RunSettings, device, world: int = 1) -> None:
    """A node starts: record this process's code and machine. A resumed node keeps its earlier
    epochs' times, and the earlier records when the code or machine changed (`previous`)."""
    record = collect(settings, device, world)
    before = read(run)
    if before is not None:
        record["epoch_seconds"] = before.get("epoch_seconds", {})
        previous = before.pop("previous", [])
        same = all(before.get(k) == record.get(k) for k in IDENTITY)
        record["previous"] = previous if same else previous + [
            {k: before.get(k) for k in IDENTITY + ("started",)}]
    write(run, record)


# What makes two runs' code or environment different.
IDENTITY = ("xspec_version", "git_commit", "git_dirty", "snapshot", "plugins", "torch",
            "open_clip", "cuda", "cudnn", "device_name", "device_count", "host")
