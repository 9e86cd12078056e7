"""Uncertainty: Wilson score intervals for proportions and t intervals across seeds.

Every accuracy and ASR in the store is a proportion `value` of `n` evaluation images, so its 95 %
interval is the Wilson score interval (Wilson 1927; Brown, Cai and DasGupta 2001 recommend it
over the normal approximation, which collapses at 0 and 1, where ASR often sits). Across seeds a
quantity is summarised by its mean and the 95 % Student t interval of that mean.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
# Two-sided 95 % Student t quantiles t(0.975, df) for df = 1..30; past 30 the normal value.
T95 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
       2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
       2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
       2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


def wilson(p, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the Wilson score interval of proportion(s) `p` out of `n`.

    centre = (p + z²/2n) / (1 + z²/n), half-width = z √(p(1−p)/n + z²/4n²) / (1 + z²/n).
    Missing p or n (or n = 0) give NaN bounds.
    """
    p = np.asarray(p, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(n > 0, n, np.nan)
        z2 = z * z
        denominator = 1 + z2 / n
        centre = (p + z2 / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def with_wilson(frame: pd.DataFrame, columns: tuple[str, ...] = ("top1", "asr"),
                prefix: str = "") -> pd.DataFrame:
    """A copy of `frame` with `<c>_lo` and `<c>_hi` for every `<c>` that has a `<c>_n` column."""
    out = frame.copy()
    for column in columns:
        name = prefix + column
        if name in out and f"{name}_n" in out:
            out[f"{name}_lo"], out[f"{name}_hi"] = wilson(out[name], out[f"{name}_n"])
    return out


def t_half_width(values) -> float:
    """Half-width of the 95 % t interval of the mean of `values` (NaN below two values)."""
    values = [float(v) for v in values if v is not None and not pd.isna(v)]
    if len(values) < 2:
        return math.nan
    df = len(values) - 1
    quantile = T95[df - 1] if df <= len(T95) else Z95
    return quantile * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def pool_seeds(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Mean, 95 % t half-width and count of each `values` column over the rows of each `keys`
    group (one row per seed); `seeds` counts the rows and `seed_list` names them."""
    rows = []
    for key, group in frame.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["seeds"] = len(group)
        row["seed_list"] = ", ".join(str(s) for s in sorted(group["seed"].dropna().unique()))
        for column in values:
            present = group[column].dropna()
            row[column] = float(present.mean()) if len(present) else math.nan
            row[f"{column}_pm"] = t_half_width(present)
            row[f"{column}_count"] = len(present)
        rows.append(row)
    return pd.DataFrame(rows)
