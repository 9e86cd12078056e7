"""A string column read from its flat files with `os.pread`: the cache of a large pairs CSV.

`xspec.runtime.column_cache` writes a column as `<key>.<i>.offsets` (int64, rows + 1, byte
offsets into the next file) and `<key>.<i>.utf8`. A row is two reads (its two offsets, then
its bytes) from the kernel's page cache, so the rows a process has read are never mapped into
it: a loader worker that reads a pair a millisecond does not grow, whatever the CSV's size, and
all processes share the one copy of the index the page cache holds (reclaimable, like any file
data). Memory-mapping the files instead (until 2026-12-04) mapped 64 KB around every row read
(the kernel's fault-around), so 8,192 random rows of a 12 M-row CSV added 0.88 GB to a process's
resident set, and every worker's set grew towards the whole index over an epoch.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np

from xspec.runtime.columns import BLOCK, _Column


_BOUNDS = struct.Struct("<qq")  # a row's start and end in the UTF-8 file


class FileStrings(_Column):
    """The first `rows` strings of a column's flat files (opened on first use in each process;
    a forked worker shares its parent's descriptors, which `pread` allows)."""

    def __init__(self, offsets_path: str | os.PathLike, data_path: str | os.PathLike, rows: int):
        self.paths = (str(offsets_path), str(data_path))
        self.rows = rows
        self._fds: tuple[int, int] | None = None

    def __getstate__(self) -> dict:  # a spawned process opens the files itself
        return {**self.__dict__, "_fds": None}

    def __del__(self) -> None:
        if getattr(self, "_fds", None) is not None:
            for fd in self._fds:
                os.close(fd)

    def _open(self) -> tuple[int, int]:
        if self._fds is None:
            self._fds = tuple(os.open(p, os.O_RDONLY | os.O_CLOEXEC) for p in self.paths)
        return self._fds

    def __len__(self) -> int:
        return self.rows

    def _row(self, index: int) -> str:
        offsets, data = self._open()
        start, end = _BOUNDS.unpack(_read(offsets, 16, index * 8))
        return _read(data, end - start, start).decode()

    def __iter__(self) -> Iterator[str]:
        """In order, `BLOCK` rows per pair of reads."""
        offsets, data = self._open()
        for first in range(0, self.rows, BLOCK):
            count = min(BLOCK, self.rows - first)
            bounds = np.frombuffer(_read(offsets, 8 * (count + 1), first * 8), dtype="<i8")
            base, bounds = int(bounds[0]), (bounds - bounds[0]).tolist()
            chunk = _read(data, bounds[-1], base)
            for start, end in zip(bounds[:-1], bounds[1:]):
                yield chunk[start:end].decode()

    def arrow(self):
        """The column as a pyarrow ChunkedArray (the rows' bytes read into memory)."""
        import pyarrow as pa

        offsets = np.fromfile(self.paths[0], dtype="<i8", count=self.rows + 1)
        data = _read(self._open()[1], int(offsets[-1] - offsets[0]), int(offsets[0]))
        return pa.chunked_array([pa.LargeStringArray.from_buffers(
            self.rows, pa.py_buffer(offsets - offsets[0]), pa.py_buffer(data))], pa.large_string())


def _read(fd: int, size: int, offset: int) -> bytes:
    """Exactly `size` bytes at `offset` (pread may return fewer at once)."""
    out = os.pread(fd, size, offset)
    while len(out) < size:
        more = os.pread(fd, size - len(out), offset + len(out))
        if not more:
            raise OSError(f"column file ended at byte {offset + len(out)} (wanted {size} from "
                          f"{offset}): the cache was changed while in use")
        out += more
    return out
