"""Columns of strings without a Python object per row: captions, paths and keys of millions of pairs.

A list of Python strings costs about 100 bytes per row, and a forked DataLoader worker that reads
it touches every object's reference count, so the pages are copied into each worker (PyTorch's
copy-on-read problem). `Strings` keeps the Arrow buffers a columnar CSV reader produced (UTF-8
bytes plus offsets, in chunks) and decodes one row at a time on access; pyarrow is imported only
where an Arrow column is given. `xspec.runtime.file_strings` reads the flat files of
`xspec.runtime.column_cache` the same way, from the page cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

BLOCK = 1 << 16  # rows per block of a scan (`Strings.__iter__`)


class _Column(Sequence[str]):
    """A read-only string column: slices and negative indices as a list has them; a subclass
    gives `_row(index)` for 0 <= index < len."""

    __hash__ = None

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self._row(index)

    def _row(self, index: int) -> str:
        raise NotImplementedError

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

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _row(self, index: int) -> str:
        chunk = int(np.searchsorted(self._starts, index, side="right")) - 1
        offsets, row = self._offsets[chunk], index - int(self._starts[chunk])
        return self._data[chunk][offsets[row]:offsets[row + 1]].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        """In order, `BLOCK` rows at a time: one Python int per row of a block, not of the column
        (two lists of 3 M ints held ~0.25 GB)."""
        for data, offsets in zip(self._data, self._offsets):
            for first in range(0, len(offsets) - 1, BLOCK):
                bounds = offsets[first: first + BLOCK + 1].tolist()
                for start, end in zip(bounds[:-1], bounds[1:]):
                    yield data[start:end].tobytes().decode()

    def arrow(self):
        """The column as a pyarrow ChunkedArray."""
        import pyarrow as pa

        return self._column if isinstance(self._column, pa.ChunkedArray) else pa.chunked_array(
            [self._column])


class Edited(_Column):
    """A column with some rows replaced (poisoned captions), the rest read from the base."""

    def __init__(self, base: Sequence[str], changes: dict[int, str] | None = None):
        self.base, self.changes = base, dict(changes or {})

    def __len__(self) -> int:
        return len(self.base)

    def _row(self, index: int) -> str:
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

    def _row(self, index: int) -> str:
        return os.path.join(self.base, self.relative[index])
