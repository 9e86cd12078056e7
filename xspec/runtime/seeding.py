"""Every random choice of a node derives from its seed through these two functions."""

from __future__ import annotations

import hashlib
import random

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a generator is made: plugins import derive_seed
    import torch


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 64-bit seed from (seed, parts), stable across processes (unlike Python's hash())."""
    words = [_as_uint(seed)] + [_as_uint(p) if isinstance(p, int) else _str_uint(p) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def _as_uint(value: int) -> int:
    return value % (1 << 64)


def _str_uint(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def generator(seed: int, *parts: int | str) -> torch.Generator:
    import torch

    return torch.Generator().manual_seed(derive_seed(seed, *parts) % (1 << 63))


def set_seed(seed: int) -> int:
    """Seed torch, numpy and `random` for code that uses the global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    return seed
