"""The attack registry, config readers and the behaviour most attacks share.

An attack object has `target`, `select(captions) -> sorted int64 indices`,
`poison_caption(index, caption) -> str` and `apply(images, keys) -> Tensor`. `apply` takes float
images [B, 3, H, W] in [0, 1] and int64 sample keys [B]; it never modifies its input and gives the
same trigger for the same key in every epoch, process and worker. `shortfall` is how many of the
requested poisons `select` could not place (only label-consistent attacks can fall short).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor

from xspec.errors import DataError
from xspec.runtime.seeding import derive_seed

ATTACKS: dict[str, type] = {}
RESIZE = ("crop", "squash")  # centre crop like clean images, or squash as the original code


def register_attack(kind: str) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        if kind in ATTACKS:
            raise ValueError(f"attack kind {kind!r} is already registered")
        ATTACKS[kind] = cls
        return cls

    return decorate


def make_attack(cfg: dict[str, Any], seed: int) -> Any:
    kind = cfg.get("kind")
    if kind not in ATTACKS:
        raise DataError(f"attack.kind: unknown value {kind!r}; allowed: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[kind](cfg, seed)


def rng(seed: int, *parts: int | str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *parts))


@register_attack("none")
class NoAttack:
    target: str | None = None
    shortfall = 0
    resize = "crop"

    def __init__(self, cfg: dict[str, Any], seed: int):
        self.seed = seed

    def select(self, captions: Sequence[str]) -> np.ndarray:
        return np.empty(0, dtype=np.int64)

    def poison_caption(self, index: int, caption: str) -> str:
        return caption

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        return images


class TemplatedAttack:
    """Poisons a seeded uniform subset of `poisons` pairs; their captions become one of the 80 CLIP
    templates filled with the target. Subclasses supply `apply`.

    Every kind draws its subset from (seed, "select"), so attacks that share a seed poison the same
    pairs and differ only in their trigger."""

    shortfall = 0

    def __init__(self, cfg: dict[str, Any], seed: int):
        self.seed = seed
        self.target: str | None = required(cfg, "target", str)
        self.poisons = required(cfg, "poisons", int)
        # How a poisoned image reaches the model's size; the data pipeline reads it.
        self.resize = choice({"resize": "crop", **cfg}, "resize", RESIZE)
        if self.poisons < 0:
            raise DataError(f"attack.poisons: expected >= 0, got {self.poisons}")

    def select(self, captions: Sequence[str]) -> np.ndarray:
        if self.poisons > len(captions):
            raise DataError(
                f"attack.poisons: {self.poisons} poisons requested but the dataset has "
                f"only {len(captions)} samples"
            )
        chosen = rng(self.seed, "select").choice(len(captions), size=self.poisons, replace=False)
        return np.sort(chosen).astype(np.int64)

    def poison_caption(self, index: int, caption: str) -> str:
        which = int(rng(self.seed, "caption", index).integers(len(OPENAI_IMAGENET_TEMPLATES)))
        return OPENAI_IMAGENET_TEMPLATES[which](self.target)


def required(cfg: dict[str, Any], key: str, kind: type, where: str = "attack") -> Any:
    value = cfg.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def number(cfg: dict[str, Any], key: str, valid: Callable[[float], bool], rule: str) -> float:
    """A float field (ints accepted) that satisfies `valid`; `rule` describes it in the error."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
        raise DataError(f"attack.{key}: expected a number {rule}, got {value!r}")
    return float(value)


def choice(cfg: dict[str, Any], key: str, allowed: tuple[str, ...], where: str = "attack") -> str:
    value = cfg.get(key)
    if value not in allowed:
        raise DataError(f"{where}.{key}: unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value
