"""Reading the text files users give (specs, captions, labels, class lists) as UTF-8, with
errors that name the file and line instead of a UnicodeDecodeError traceback."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

from xspec.errors import XspecError


def decode_utf8(data: bytes, name: str, error: type[XspecError] = XspecError) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{name}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                    "save the file as UTF-8") from None


def _size(limit: int) -> str:
    return f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit:,} bytes"


def read_regular(path: str | Path, error: type[XspecError] = XspecError,
                 limit: int | None = None) -> bytes:
    """The bytes of a regular file, at most `limit` of them. A FIFO (which would block), a
    device such as /dev/zero (endless), a directory or a file over the limit raises `error`
    naming it, before anything is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: {exc.strerror or 'cannot read'}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{path}: is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise error(f"{path}: not a regular file (a FIFO, socket or device); give a file")
        try:
            data = handle.read() if limit is None else handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: {exc.strerror or 'cannot read'}") from None
    if limit is not None and len(data) > limit:
        raise error(f"{path}: larger than {_size(limit)}, the most xspec reads of such a file")
    return data


def read_utf8(path: str | Path, error: type[XspecError] = XspecError,
              limit: int | None = None) -> str:
    """The file's text; a missing, unreadable, irregular or (past `limit` bytes) too large
    file raises `error` naming it."""
    return decode_utf8(read_regular(path, error, limit), str(path), error)


def read_csv_rows(path: str | Path, error: type[XspecError] = XspecError) -> list[dict]:
    """CSV rows as dicts (first line: header). Line k of the file is row k - 2."""
    return list(csv.DictReader(io.StringIO(read_utf8(path, error), newline="")))
