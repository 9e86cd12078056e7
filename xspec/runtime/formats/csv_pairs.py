"""Image-caption pairs in the CleanCLIP/CC3M layout: a CSV of image paths (relative to the CSV)
and captions, read with Arrow's columnar CSV reader."""

from __future__ import annotations

import os

import pyarrow.compute as pc

from xspec.errors import DataError
from xspec.runtime.column_cache import mapped_table
from xspec.runtime.columns import JoinedPaths, Strings
from xspec.runtime.data import FileImages, PairSet, read_csv


def _read_pair_columns(cfg: dict) -> tuple[Strings, Strings]:
    """(image paths relative to the CSV, captions) read with Arrow's columnar CSV reader."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    path, columns = cfg["path"], [cfg["image_key"], cfg["caption_key"]]
    mapped = mapped_table(path, columns, cfg["caption_key"]) if _large(path) else None
    if mapped is None:
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
    else:
        table, first = mapped
        table = table.slice(0, cfg.get("size") or table.num_rows)
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    if 0 <= first < table.num_rows:
        raise DataError(f"{path}: line {first + 2}: empty caption")
    return Strings(table.column(cfg["image_key"])), Strings(table.column(cfg["caption_key"]))


def _large(path: str) -> bool:
    """CSVs worth a memory-mapped cache (xspec.runtime.column_cache): above 64 MB (~1 M rows)."""
    try:
        return os.path.getsize(path) > MAPPED_ABOVE
    except OSError:
        return False


MAPPED_ABOVE = 64 << 20


def pair_captions(cfg: dict) -> Strings:
    return _read_pair_columns(cfg)[1]


def open_pairs(cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet:
    relative, captions = _read_pair_columns(cfg)
    paths = JoinedPaths(os.path.dirname(os.path.abspath(cfg["path"])), relative)
    return PairSet(FileImages(paths, size, on_bad_image, decode=cfg.get("decode", "exact")), captions)
