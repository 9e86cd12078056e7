"""Reading the text files users give (specs, captions, labels, class lists) as UTF-8, with
errors that name the file and line instead of a UnicodeDecodeError traceback."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from xspec.errors import XspecError


def decode_utf8(data: bytes, name: str, error: type[XspecError] = XspecError) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{name}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                    "save the file as UTF-8") from None


def read_utf8(path: str | Path, error: type[XspecError] = XspecError) -> str:
    """The file's text; a missing or unreadable file raises `error` naming it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{path}: {exc.strerror or 'cannot read'}") from None
    return decode_utf8(data, str(path), error)


def read_csv_rows(path: str | Path, error: type[XspecError] = XspecError) -> list[dict]:
    """CSV rows as dicts (first line: header). Line k of the file is row k - 2."""
    return list(csv.DictReader(io.StringIO(read_utf8(path, error), newline="")))
