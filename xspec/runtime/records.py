"""Per-run result files: the metrics log (parquet, rewritten atomically) and checkpoints."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from xspec.errors import DataError
from xspec.store.workspace import atomic_write_bytes

SCHEMA = pa.schema([
    ("node_id", pa.string()), ("epoch", pa.int32()), ("split", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()), ("n", pa.int64()), ("step", pa.int64()),
])


class MetricsLog:
    """Rows of one node; `flush` replaces the file whole, so a crash never leaves half of it.
    An unreadable file raises `DataError` naming it, unless `damaged_ok`: then (a node about to
    compute its rows again) it is moved aside to metrics.parquet.damaged and `lost` says why."""

    def __init__(self, path: Path, node_id: str, damaged_ok: bool = False):
        self.path, self.node_id, self.lost = path, node_id, None
        try:
            self.rows: list[dict] = pq.read_table(path).to_pylist() if path.exists() else []
        except (pa.ArrowException, OSError) as exc:
            self.lost = f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:100]})"
            if not damaged_ok:
                raise DataError(f"{self.lost}; run the node that wrote it again") from None
            os.replace(path, path.with_name(path.name + ".damaged"))
            self.rows = []

    def add(self, epoch: int, split: str, metric: str, value: float, n: int | None = None,
            step: int | None = None) -> None:
        self.rows.append({"node_id": self.node_id, "epoch": epoch, "split": split,
                          "metric": metric, "value": float(value), "n": n, "step": step})

    def keep_through(self, epoch: int) -> None:
        """Drop rows after `epoch`: the epoch a crash interrupted is recomputed on resume."""
        self.rows = [r for r in self.rows if r["epoch"] <= epoch]

    def flush(self) -> None:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self.rows, schema=SCHEMA), buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def value(self, epoch: int, split: str, metric: str) -> float | None:
        for row in self.rows:
            if (row["epoch"], row["split"], row["metric"]) == (epoch, split, metric):
                return row["value"]
        return None


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def damaged(path: Path, exc: BaseException) -> str | None:
    """Why a checkpoint torch cannot open is truncated or damaged (an interrupted copy, a full
    disk), or None when the file is whole but of another kind."""
    text = str(exc)
    if isinstance(exc, EOFError) or "failed reading zip archive" in text or \
            "central directory" in text:
        try:
            size = f"{os.path.getsize(path):,} bytes"
        except OSError:
            size = "unreadable"
        return f"checkpoint {path} is truncated or damaged ({size}, not a complete torch file)"
    return None


def load_checkpoint(path: Path) -> dict:
    """A checkpoint xspec wrote; a damaged one raises `DataError` naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, ...
        raise DataError(damaged(path, exc) or f"checkpoint {path} is unreadable "
                        f"({type(exc).__name__}: {str(exc)[:120]})") from None
