"""The string columns of a large pairs CSV, memory-mapped from an Arrow IPC file written once.

Reading a 12 M-row CSV into memory holds ~1 GB of caption bytes in the training process. Here
the CSV is converted once, block by block (4 MB of CSV at a time), to an Arrow IPC file in
$XDG_CACHE_HOME/xspec/columns (default ~/.cache/xspec), keyed by the CSV's absolute path, size,
modification time and the columns read; later opens map that file. The columns' buffers are
then file-backed pages: never anonymous memory, shared by every loader worker (no
copy-on-write: nothing writes them) and given back by the kernel under pressure. The first
whitespace-only caption's row is found while converting and kept in the file's metadata, so an
open never scans the captions.

Any failure to write the cache (read-only home, full disk) falls back to reading the CSV into
memory, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from pyarrow import csv as pacsv

BLOCK = 4 << 20
VERSION = "1"


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "xspec" / "columns"


def _key(path: str, columns: list[str]) -> str:
    stat = os.stat(path)
    ident = [VERSION, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, columns]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:32]


def _convert(path: str, columns: list[str], caption: str, target: Path) -> None:
    """Stream the CSV into `target` (written under a temporary name, then renamed)."""
    options = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=False,
                                   column_types={c: pa.large_string() for c in columns})
    reader = pacsv.open_csv(path, convert_options=options,
                            read_options=pacsv.ReadOptions(block_size=BLOCK, use_threads=False))
    first_empty, rows = -1, 0
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink:
            writer = None
            for batch in reader:
                if first_empty < 0 and len(batch):
                    empty = pc.match_substring_regex(batch.column(caption), r"^\s*$")
                    if pc.any(empty).as_py():
                        first_empty = rows + pc.index(empty, True).as_py()
                if writer is None:
                    writer = ipc.new_file(sink, batch.schema)
                writer.write_batch(batch)
                rows += len(batch)
            if writer is None:
                writer = ipc.new_file(sink, reader.schema)
            writer.close()
        meta = target.with_suffix(".json")
        meta.write_text(json.dumps({"rows": rows, "first_empty_caption": first_empty}))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def mapped_table(path: str, columns: list[str], caption: str) -> tuple[pa.Table, int] | None:
    """(table whose buffers map the cache file, row of the first empty caption or -1), or
    None where the cache cannot be written (the caller then reads the CSV into memory)."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{_key(path, columns)}.arrow"
        if not target.exists():
            _convert(path, columns, caption, target)
        meta = json.loads(target.with_suffix(".json").read_text())
        table = ipc.open_file(pa.memory_map(str(target), "r")).read_all()
    except (OSError, ValueError, pa.ArrowException):
        return None
    return table, int(meta["first_empty_caption"])
