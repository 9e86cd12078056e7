"""Image-caption pairs in the CleanCLIP/CC3M layout: a CSV of image paths (relative to the CSV)
and captions, read with Arrow's columnar CSV reader; a CSV over 64 MB is converted once to flat
files that later opens read from the page cache without importing pyarrow
(xspec.runtime.column_cache)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from xspec.errors import DataError
from xspec.runtime.column_cache import cached_columns
from xspec.runtime.columns import JoinedPaths, Strings
from xspec.runtime.data import FileImages, PairSet, read_csv


def _read_pair_columns(cfg: dict) -> tuple[Sequence[str], Sequence[str]]:
    """(image paths relative to the CSV, captions) read with Arrow's columnar CSV reader."""
    path, columns = cfg["path"], [cfg["image_key"], cfg["caption_key"]]
    cached = cached_columns(path, columns, cfg["caption_key"]) if _large(path) else None
    if cached is not None:
        (paths, captions), first = cached
        rows = min(cfg.get("size") or captions.rows, captions.rows)
        paths.rows = captions.rows = rows
        return _checked(path, rows, first, paths, captions)
    return _read_in_memory(cfg, path, columns)


def _read_in_memory(cfg: dict, path: str, columns: list[str]) -> tuple[Strings, Strings]:
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    options = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=False,
                                   column_types={c: pa.large_string() for c in columns})
    try:
        table = pacsv.read_csv(path, convert_options=options)
    except (OSError, pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        read_csv(path, columns)  # the slow reader names the file, line or missing column
        raise DataError(f"{path}: {exc}") from None
    table = table.slice(0, cfg.get("size") or table.num_rows)
    empty = pc.match_substring_regex(table.column(cfg["caption_key"]), r"^\s*$")
    first = pc.index(empty, True).as_py() if pc.any(empty).as_py() else -1
    return _checked(path, table.num_rows, first, Strings(table.column(cfg["image_key"])),
                    Strings(table.column(cfg["caption_key"])))


def _checked(path: str, rows: int, first_empty: int, paths: Sequence[str],
             captions: Sequence[str]) -> tuple[Sequence[str], Sequence[str]]:
    if rows == 0:
        raise DataError(f"{path}: no rows")
    if 0 <= first_empty < rows:
        raise DataError(f"{path}: line {first_empty + 2}: empty caption")
    return paths, captions


def _large(path: str) -> bool:
    """CSVs worth a cached index (xspec.runtime.column_cache): above 64 MB (~1 M rows)."""
    try:
        return os.path.getsize(path) > MAPPED_ABOVE
    except OSError:
        return False


MAPPED_ABOVE = 64 << 20


def pair_captions(cfg: dict) -> Sequence[str]:
    return _read_pair_columns(cfg)[1]


def open_pairs(cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet:
    relative, captions = _read_pair_columns(cfg)
    paths = JoinedPaths(os.path.dirname(os.path.abspath(cfg["path"])), relative)
    return PairSet(FileImages(paths, size, on_bad_image, decode=cfg.get("decode", "exact")), captions)
