"""`FileInput`: a plugin field that names a file.

In a spec the field is a path, absolute or relative to the spec's folder (`${VAR}` expanded).
Validation resolves it and reads the file's SHA-256: the field's value is a `FileRef`
(`path`, `sha256`), which is what the node's config holds, so the content hash is in the node
id (editing the file re-runs the nodes that read it, and only those). The node process
validates the config again and refuses to run if the file changed since the plan (or is gone):
plan the study again. Torch-free.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from xspec.spec.base import XspecModel

SPEC_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("spec_dir", default=None)
_HASHES: dict[tuple, str] = {}


class FileRef(XspecModel):
    """A resolved file input: its absolute path and the SHA-256 of its content."""

    path: str
    sha256: str

    def read_bytes(self) -> bytes:
        return Path(self.path).read_bytes()

    def read_text(self, encoding: str = "utf-8") -> str:
        return Path(self.path).read_text(encoding=encoding)


def sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _unchanged(ref: FileRef) -> FileRef:
    try:
        actual = sha256(Path(ref.path))
    except OSError as exc:
        raise ValueError(f"{ref.path}: {exc.strerror}; the study was planned with this file "
                         "(plan it again)") from None
    if actual != ref.sha256:
        raise ValueError(f"{ref.path} changed since the study was planned (sha256 "
                         f"{ref.sha256[:12]} then, {actual[:12]} now); plan the study again "
                         "(xspec plan / xspec run) so the runs that read it get new ids")
    return ref


def _resolve(value: Any) -> Any:
    if isinstance(value, FileRef):
        return value
    if isinstance(value, dict) and set(value) == {"path", "sha256"}:  # a node's config
        return _unchanged(FileRef(**value))
    if not isinstance(value, (str, Path)) or not str(value):
        raise ValueError(f"expected a file path (got {value!r})")
    path = Path(os.path.expandvars(str(value))).expanduser()
    if not path.is_absolute():
        path = (SPEC_DIR.get() or Path.cwd()) / path
    if not path.is_file():
        raise ValueError(f"{value}: no such file ({path})")
    return FileRef(path=str(path.resolve()), sha256=sha256(path.resolve()))


FileInput = Annotated[FileRef, BeforeValidator(_resolve), WithJsonSchema(
    {"type": "string", "description": "a file path, absolute or relative to the spec's folder"})]
"""A field type: `trigger: FileInput` in a plugin's model (see the module docstring)."""
