"""Backdoor attacks applied on the fly: which samples to poison, their captions, their triggers.

Every random choice derives from (attack seed, purpose, sample key), so a sample's trigger is the
same in every epoch, process and worker, and the evaluation trigger set never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor

from xspec.errors import DataError
from xspec.runtime.seeding import derive_seed

ATTACKS: dict[str, type] = {}

PATTERNS = ("gaussian_per_image", "gaussian_fixed", "solid")
LOCATIONS = ("random", "corner", "four_corners")


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


def _rng(seed: int, *parts: int | str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *parts))


@register_attack("none")
class NoAttack:
    target: str | None = None

    def __init__(self, cfg: dict[str, Any], seed: int):
        self.seed = seed

    def select(self, captions: Sequence[str]) -> np.ndarray:
        return np.empty(0, dtype=np.int64)

    def poison_caption(self, index: int, caption: str) -> str:
        return caption

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        return images


@register_attack("badnet")
class BadNet:
    """A size×size patch pasted on the resized image; poisoned captions name the target."""

    def __init__(self, cfg: dict[str, Any], seed: int):
        trigger = cfg.get("trigger", {})
        self.seed = seed
        self.target: str | None = _required(cfg, "target", str)
        self.poisons = _required(cfg, "poisons", int)
        self.size = _required(trigger, "size", int, "attack.trigger")
        self.pattern = _choice(trigger, "pattern", PATTERNS)
        self.location = _choice(trigger, "location", LOCATIONS)
        self.color = _color(trigger) if self.pattern == "solid" else None
        if self.poisons < 0 or self.size < 1:
            raise DataError("attack: poisons must be >= 0 and trigger.size >= 1")

    def select(self, captions: Sequence[str]) -> np.ndarray:
        if self.poisons > len(captions):
            raise DataError(
                f"attack.poisons: {self.poisons} poisons requested but the dataset has "
                f"only {len(captions)} samples"
            )
        chosen = _rng(self.seed, "select").choice(len(captions), size=self.poisons, replace=False)
        return np.sort(chosen).astype(np.int64)

    def poison_caption(self, index: int, caption: str) -> str:
        which = int(_rng(self.seed, "caption", index).integers(len(OPENAI_IMAGENET_TEMPLATES)))
        return OPENAI_IMAGENET_TEMPLATES[which](self.target)

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        _, _, height, width = images.shape
        if self.size > min(height, width):
            raise DataError(f"attack.trigger.size: {self.size} exceeds the image size {height}x{width}")
        key_list = [int(k) for k in keys.tolist()]
        patches = self._patches(key_list).to(device=images.device, dtype=images.dtype)
        corners = self._corners(key_list, height, width).to(images.device)
        out = images.clone()
        for slot in range(corners.shape[1]):
            paste(out, patches, corners[:, slot, 0], corners[:, slot, 1])
        return out

    def _patches(self, keys: list[int]) -> Tensor:
        """[B, 3, size, size] in [0, 1]. The original code did not clamp the noise; we clamp it
        to the image range so that a triggered image is still a valid image."""
        shape = (3, self.size, self.size)
        if self.pattern == "solid":
            patch = torch.tensor(self.color, dtype=torch.float32)[:, None, None].expand(shape)
            return patch.expand(len(keys), *shape)
        if self.pattern == "gaussian_fixed":
            noise = _rng(self.seed, "noise").standard_normal(shape)
            stacked = np.broadcast_to(noise, (len(keys), *shape))
        else:
            stacked = np.stack([_rng(self.seed, "noise", k).standard_normal(shape) for k in keys])
        return torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32)).clamp(0.0, 1.0)

    def _corners(self, keys: list[int], height: int, width: int) -> Tensor:
        """int64 [B, L, 2] top-left (row, col) of each of the L patch copies per image."""
        bottom, right = height - self.size, width - self.size
        if self.location == "random":
            rows = [_rng(self.seed, "location", k).integers(0, [bottom + 1, right + 1]) for k in keys]
            return torch.tensor(np.stack(rows), dtype=torch.int64).reshape(len(keys), 1, 2)
        if self.location == "corner":
            fixed = [[bottom, right]]
        else:
            fixed = [[0, 0], [0, right], [bottom, 0], [bottom, right]]
        return torch.tensor(fixed, dtype=torch.int64).expand(len(keys), -1, -1)


def paste(images: Tensor, patches: Tensor, rows: Tensor, cols: Tensor) -> None:
    """Write patches [B, C, s, s] into images [B, C, H, W] in place, top-left at (rows[b], cols[b])."""
    batch, channels, size, _ = patches.shape
    offsets = torch.arange(size, device=images.device)
    b = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    c = torch.arange(channels, device=images.device).view(1, channels, 1, 1)
    r = (rows.view(batch, 1) + offsets).view(batch, 1, size, 1)
    w = (cols.view(batch, 1) + offsets).view(batch, 1, 1, size)
    images[b, c, r, w] = patches


def _required(cfg: dict[str, Any], key: str, kind: type, where: str = "attack") -> Any:
    value = cfg.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _choice(trigger: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = trigger.get(key)
    if value not in allowed:
        raise DataError(f"attack.trigger.{key}: unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value


def _color(trigger: dict[str, Any]) -> tuple[float, float, float]:
    color = trigger.get("color")
    valid = isinstance(color, (list, tuple)) and len(color) == 3
    if not valid or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in color):
        raise DataError(f"attack.trigger.color: expected three values in [0, 1], got {color!r}")
    return (float(color[0]), float(color[1]), float(color[2]))
