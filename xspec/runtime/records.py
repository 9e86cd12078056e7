"""Per-run result files: the metrics log (parquet, rewritten atomically) and checkpoints."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from xspec.store.workspace import atomic_write_bytes

SCHEMA = pa.schema([
    ("node_id", pa.string()), ("epoch", pa.int32()), ("split", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()), ("n", pa.int64()), ("step", pa.int64()),
])


class MetricsLog:
    """Rows of one node; `flush` replaces the file whole, so a crash never leaves half of it."""

    def __init__(self, path: Path, node_id: str):
        self.path, self.node_id = path, node_id
        self.rows: list[dict] = pq.read_table(path).to_pylist() if path.exists() else []

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


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
