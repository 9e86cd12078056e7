"""Code frozen at submit time: `xspec submit` copies the xspec package and the study's plugins
into the workspace, and its jobs import them from there.

A SLURM job may start hours after `xspec submit`; without a snapshot it imports whatever code
is installed when it starts, so an edit (or a `git pull`) made meanwhile silently changes what
a queued job runs. The snapshot lives in `<workspace>/code/<hash>/`, `hash` being the sha256
of every file's relative path and content: submitting the same code twice reuses one folder,
and the hash goes into each run's provenance (`XSPEC_SNAPSHOT`). `xspec submit --no-snapshot`
runs the installed code instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import xspec
from xspec.spec.tables.settings import RunSettings
from xspec.runtime.provenance import SNAPSHOT_ENV, code_version, tree_files

SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Snapshot:
    digest: str
    path: Path  # the folder put first on the jobs' PYTHONPATH

    def python(self, base: list[str]) -> str:
        """The interpreter command a job runs: `base` with the snapshot first on its path."""
        return shlex.join(["env", f"PYTHONPATH={self.path}", f"{SNAPSHOT_ENV}={self.digest}",
                           *base])


def _package_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in SKIP_SUFFIXES and p.name != "SNAPSHOT.json")


def _members(plugins: list[dict]) -> list[tuple[str, Path]]:
    """(path inside the snapshot, source file) of the package and the plugins' files."""
    package = Path(xspec.__file__).resolve().parent
    out = [(f"xspec/{p.relative_to(package)}", p) for p in _package_files(package)]
    for plugin in plugins:
        if not plugin.get("path"):
            continue  # an installed module: not frozen (provenance hashes its file)
        source = Path(plugin["path"])
        base = source.parent.parent if source.name == "__init__.py" else source.parent
        out += [(f"plugins/{f.relative_to(base)}", f) for f in tree_files(source)]
    return out


def digest(members: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, path in members:
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def freeze(workspace_root: Path, plugins: list[dict]) -> Snapshot:
    """Copy the code into `<workspace>/code/<hash>/` (once per distinct content)."""
    members = _members(plugins)
    key = digest(members)
    target = Path(workspace_root) / "code" / key[:16]
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".snapshot-", dir=target.parent))
        for name, path in members:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / name)
        source = code_version()
        stamp = {"digest": key, "source": str(Path(xspec.__file__).resolve().parent),
                 "git_commit": source["git_commit"], "git_dirty": source["git_dirty"]}
        (staging / "xspec" / "SNAPSHOT.json").write_text(json.dumps(stamp, indent=2) + "\n")
        try:
            os.rename(staging, target)
        except OSError:  # another submit made it meanwhile: the same content
            shutil.rmtree(staging, ignore_errors=True)
    return Snapshot(key[:16], target)


def frozen_settings(settings: RunSettings, snapshot: Snapshot, base: list[str]) -> RunSettings:
    """The jobs' settings: plugins imported from their snapshot copies, and the interpreter
    command that puts the snapshot first on the path."""
    plugins = []
    for plugin in settings.plugins:
        if plugin.get("path"):
            source = Path(plugin["path"])
            inside = (snapshot.path / "plugins" / source.parent.name / source.name
                      if source.name == "__init__.py" else snapshot.path / "plugins" / source.name)
            plugin = {**plugin, "path": str(inside)}
        plugins.append(plugin)
    return settings.model_copy(update={"plugins": plugins,
                                      "worker_python": snapshot.python(base)})
