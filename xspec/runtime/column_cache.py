"""The string columns of a large pairs CSV, read from flat files written once.

Reading a 12 M-row CSV into memory holds ~1 GB of caption bytes in the training process. Here
the CSV is converted once, block by block (4 MB of CSV at a time), to two flat files per column
in $XDG_CACHE_HOME/xspec/columns (default ~/.cache/xspec), keyed by the CSV's absolute path,
size, modification time and the columns read: `<key>.<i>.offsets` (int64, rows + 1) and
`<key>.<i>.utf8` (the column's UTF-8 bytes). A JSON file, written last, holds the row count and
the first whitespace-only caption's row, so an open never scans the captions. Later opens read
rows from the flat files with `os.pread` (`xspec.runtime.file_strings.FileStrings`): the index
lives in the kernel's page cache, one copy shared by every process and loader worker and given
back under pressure, never in a process's anonymous memory nor mapped into it.

Memory: the conversion runs in a child process (`python -m xspec.runtime.column_cache`) that
imports pyarrow and nothing of torch, so Arrow's CSV block pipeline (~0.2 GB of buffers, kept
in Arrow's pool after the read) never lands in the node's process, and the node's process does
not import pyarrow at all to read the cache (pyarrow alone maps ~26 MB).

Any failure to write the cache (read-only home, full disk, a CSV Arrow cannot parse) falls back
to reading the CSV into memory, as before; that reader names the bad line or column.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from xspec.runtime.file_strings import FileStrings

BLOCK = 4 << 20
VERSION = "2"


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "xspec" / "columns"


def _key(path: str, columns: list[str]) -> str:
    stat = os.stat(path)
    ident = [VERSION, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, columns]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:32]


def _files(target: Path, column: int) -> tuple[Path, Path]:
    return (target.with_name(f"{target.stem}.{column}.offsets"),
            target.with_name(f"{target.stem}.{column}.utf8"))


def _append(chunk, offsets_out, data_out, written: int) -> int:
    """Append one Arrow large_string chunk to a column's flat files; the bytes written so far
    after it."""
    _, offsets, data = chunk.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[chunk.offset: chunk.offset + len(chunk) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    if data is not None and end > start:
        data_out.write(memoryview(np.frombuffer(data, dtype=np.uint8)[start:end]))
    (offsets[1:] - start + written).astype(np.int64).tofile(offsets_out)
    return written + end - start


def convert(path: str, columns: list[str], caption: str, target: Path, block: int) -> None:
    """Stream the CSV into `target`'s flat files (written under temporary names, then renamed;
    the JSON, renamed last, marks the cache complete). Runs in the child process."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    options = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=False,
                                   column_types={c: pa.large_string() for c in columns})
    reader = pacsv.open_csv(path, convert_options=options,
                            read_options=pacsv.ReadOptions(block_size=block, use_threads=False))
    tag = f".{os.getpid()}.tmp"
    finals = [f for i in range(len(columns)) for f in _files(target, i)]
    temps = [f.with_name(f.name + tag) for f in finals]
    handles = [open(t, "wb") for t in temps]
    try:
        written, first_empty, rows = [0] * len(columns), -1, 0
        for out in handles[0::2]:
            np.zeros(1, np.int64).tofile(out)
        for batch in reader:
            if first_empty < 0 and len(batch):
                empty = pc.match_substring_regex(batch.column(caption), r"^\s*$")
                if pc.any(empty).as_py():
                    first_empty = rows + pc.index(empty, True).as_py()
            for i, name in enumerate(columns):
                written[i] = _append(batch.column(name), handles[2 * i], handles[2 * i + 1],
                                     written[i])
            rows += len(batch)
        for handle in handles:
            handle.close()
        for temp, final in zip(temps, finals):
            os.replace(temp, final)
        meta = {"rows": rows, "first_empty_caption": first_empty, "columns": columns}
        temp_meta = target.with_name(target.name + tag)
        temp_meta.write_text(json.dumps(meta))
        os.replace(temp_meta, target)
    finally:
        for handle in handles:
            handle.close()
        for temp in temps:
            temp.unlink(missing_ok=True)


def cached_columns(path: str, columns: list[str], caption: str
                   ) -> tuple[list[FileStrings], int] | None:
    """([each column, read from its flat files], row of the first empty caption or -1), or None
    where the cache cannot be written (the caller then reads the CSV into memory)."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{_key(path, columns)}.json"
        if not target.exists():
            done = subprocess.run(
                [sys.executable, "-m", "xspec.runtime.column_cache", path, json.dumps(columns),
                 caption, str(target), str(BLOCK)], capture_output=True, text=True)
            if done.returncode != 0 or not target.exists():
                return None
        meta = json.loads(target.read_text())
        rows = int(meta["rows"])
        for i in range(len(columns)):
            if _files(target, i)[0].stat().st_size < 8 * (rows + 1):
                return None  # a cache cut short (a full disk): read the CSV instead
        return [FileStrings(*_files(target, i), rows) for i in range(len(columns))], int(
            meta["first_empty_caption"])
    except (OSError, ValueError, KeyError):
        return None


if __name__ == "__main__":
    convert(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], Path(sys.argv[4]),
            int(sys.argv[5]))
