"""Detect-then-retrain's data side: which training pairs a pretrain node with `drop` keeps.

The detect dependency's `scores.parquet` holds every pair's score per detector; the original
(Detect-CLIP-Backdoor-Samples datasets/cc3m.py:165-179) sorts the scores ascending and keeps the
first `int(n * safe_precentage)` pairs, here `int(n * (1 - drop))`. Unscored pairs (unreadable
images, NaN) sort last, so they are dropped first. The run folder's `dropped.json` records
what was left out and how many poisons the retrained model still sees.
"""

from __future__ import annotations

import numpy as np

from xspec.errors import DataError
from xspec.store.workspace import atomic_write_json


def kept_pairs(scores: np.ndarray, drop: float) -> np.ndarray:
    """Indices of the `int(n * (1 - drop))` lowest-scored pairs, in index order."""
    n = len(scores)
    order = np.argsort(np.where(np.isnan(scores), np.inf, scores), kind="stable")
    return np.sort(order[: int(n * (1 - drop))])


def training_indices(ctx, poisoned: np.ndarray) -> np.ndarray:
    """The pairs this pretrain node trains on: all of them, or those its detect dependency
    did not score highest (`cfg.drop`)."""
    drop = ctx.cfg.drop
    if drop is None:
        return np.arange(len(poisoned))
    import pandas as pd  # here: every pretrain node imports this module, few drop (pandas ~36 MB)

    path = ctx.dep("detect").path / "scores.parquet"
    table = pd.read_parquet(path)
    if drop.detector not in table.columns or len(table) != len(poisoned):
        raise DataError(f"{path}: no '{drop.detector}' scores for {len(poisoned)} pairs")
    scores = table.sort_values("index")[drop.detector].to_numpy(dtype=float)
    kept = kept_pairs(scores, drop.drop)
    dropped = np.setdiff1d(np.arange(len(poisoned)), kept)
    found = {"detector": drop.detector, "drop": drop.drop, "pairs": len(poisoned),
             "kept": len(kept), "dropped": len(dropped),
             "poisons": int(poisoned.sum()), "poisons_kept": int(poisoned[kept].sum()),
             "dropped_indices": dropped.tolist()}
    atomic_write_json(ctx.run.path / "dropped.json", found)
    ctx.log(f"retrain: {drop.detector} dropped {len(dropped)} of {len(poisoned)} pairs; "
            f"{found['poisons_kept']} of {found['poisons']} poisons remain")
    return kept
