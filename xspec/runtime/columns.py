"""Columns of strings without a Python object per row: captions, paths and keys of millions of pairs.

A list of Python strings costs about 100 bytes per row, and a forked DataLoader worker that reads
it touches every object's reference count, so the pages are copied into each worker (PyTorch's
copy-on-read problem). `Strings` keeps the Arrow buffers a columnar CSV reader produced (UTF-8
bytes plus offsets, in chunks), or the memory-mapped flat files of `xspec.runtime.column_cache`,
and decodes one row at a time on access. pyarrow is imported only where an Arrow column is given.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence

import numpy as np


BLOCK = 1 << 16  # rows per block of a scan (`Strings.__iter__`)


def release(array: np.ndarray, start: int, stop: int) -> None:
    """Give back the whole pages of elements [start, stop) of a read-only memory-mapped array
    (`np.memmap`, mode "r": a shared file mapping, so dropping clean pages loses nothing and a
    later access reads them again from the page cache); other arrays are left alone."""
    mapped = getattr(array, "_mmap", None)
    if mapped is None or array.flags.writeable or stop <= start:  # "c"/"r+" maps: keep them
        return
    base = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
    first = array.ctypes.data - base + start * array.itemsize
    last = array.ctypes.data - base + stop * array.itemsize
    first = -(-first // mmap.PAGESIZE) * mmap.PAGESIZE
    last = last // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        mapped.madvise(mmap.MADV_DONTNEED, first, last - first)


class _Column(Sequence[str]):
    __hash__ = None

    def __eq__(self, other) -> bool:
        if isinstance(other, str) or not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))


class Strings(_Column):
    """Read-only strings over the chunks of an Arrow string column."""

    def __init__(self, column):
        import pyarrow as pa

        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        self._column = column  # owns the buffers the views below point into
        self._data, self._offsets = [], []
        for chunk in (c for c in chunks if len(c)):
            if chunk.null_count:
                raise ValueError("a string column with missing values")
            width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            _, offsets, data = chunk.buffers()
            self._offsets.append(np.frombuffer(offsets, dtype=width)[
                chunk.offset: chunk.offset + len(chunk) + 1])
            self._data.append(np.frombuffer(data, dtype=np.uint8) if data is not None
                              else np.zeros(0, np.uint8))
        self._starts = np.cumsum([0] + [len(o) - 1 for o in self._offsets])

    @classmethod
    def of(cls, values: Sequence[str]) -> "Strings":
        import pyarrow as pa

        return values if isinstance(values, Strings) else cls(pa.array(list(values),
                                                                       pa.large_string()))

    @classmethod
    def from_buffers(cls, offsets: np.ndarray, data: np.ndarray, rows: int | None = None
                     ) -> "Strings":
        """The first `rows` strings (all by default) of one column given as int64 offsets
        (rows + 1 of them) and its UTF-8 bytes, e.g. memory-mapped files; nothing is copied."""
        self = cls.__new__(cls)
        rows = len(offsets) - 1 if rows is None else min(rows, len(offsets) - 1)
        self._column, self._offsets, self._data = None, [offsets[: rows + 1]], [data]
        self._starts = np.array([0, rows])
        return self

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        chunk = int(np.searchsorted(self._starts, index, side="right")) - 1
        offsets, row = self._offsets[chunk], index - int(self._starts[chunk])
        return self._data[chunk][offsets[row]:offsets[row + 1]].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        """In order, `BLOCK` rows at a time: one Python int per row of a block, not of the column
        (two lists of 3 M ints held ~0.25 GB), and the pages of a memory-mapped block are let go
        once read, so a scan of a 12 M-row column does not map all of it into the process."""
        for data, offsets in zip(self._data, self._offsets):
            for first in range(0, len(offsets) - 1, BLOCK):
                bounds = offsets[first: first + BLOCK + 1].tolist()
                for start, end in zip(bounds[:-1], bounds[1:]):
                    yield data[start:end].tobytes().decode()
                release(data, bounds[0], bounds[-1])
                release(offsets, first, first + len(bounds))

    def arrow(self):
        """The column as a pyarrow ChunkedArray (built from the buffers where none was given)."""
        import pyarrow as pa

        if self._column is None:
            return pa.chunked_array([pa.LargeStringArray.from_buffers(
                len(o) - 1, pa.py_buffer(o - o[0]), pa.py_buffer(d[o[0]:o[-1]]))
                for o, d in zip(self._offsets, self._data)], pa.large_string())
        return self._column if isinstance(self._column, pa.ChunkedArray) else pa.chunked_array(
            [self._column])


class Edited(_Column):
    """A column with some rows replaced (poisoned captions), the rest read from the base."""

    def __init__(self, base: Sequence[str], changes: dict[int, str] | None = None):
        self.base, self.changes = base, dict(changes or {})

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index) + (len(self) if int(index) < 0 else 0)
        return self.changes[index] if index in self.changes else self.base[index]

    def __setitem__(self, index: int, value: str) -> None:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        self.changes[int(index)] = value

    def __iter__(self) -> Iterator[str]:
        for i, value in enumerate(self.base):
            yield self.changes.get(i, value)


class JoinedPaths(_Column):
    """File paths: each row of a relative-path column joined to a base folder on access."""

    def __init__(self, base: str, relative: Sequence[str]):
        self.base, self.relative = base, relative

    def __len__(self) -> int:
        return len(self.relative)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return os.path.join(self.base, self.relative[index])
