"""Patch triggers: BadNet and its label-consistent variant."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xspec.errors import DataError
from xspec.runtime.attacks.base import TemplatedAttack, choice, register_attack, required, rng

PATTERNS = ("gaussian_per_image", "gaussian_fixed", "solid")
LOCATIONS = ("random", "corner", "four_corners")


@register_attack("badnet")
class BadNet(TemplatedAttack):
    """A size×size patch pasted on the resized image; poisoned captions name the target."""

    def __init__(self, cfg: dict[str, Any], seed: int):
        super().__init__(cfg, seed)
        trigger = cfg.get("trigger", {})
        self.size = required(trigger, "size", int, "attack.trigger")
        self.pattern = choice(trigger, "pattern", PATTERNS, "attack.trigger")
        self.location = choice(trigger, "location", LOCATIONS, "attack.trigger")
        self.color = _color(trigger) if self.pattern == "solid" else None
        if self.size < 1:
            raise DataError(f"attack.trigger.size: expected >= 1, got {self.size}")

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
            noise = rng(self.seed, "noise").standard_normal(shape)
            stacked = np.broadcast_to(noise, (len(keys), *shape))
        else:
            stacked = np.stack([rng(self.seed, "noise", k).standard_normal(shape) for k in keys])
        return torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32)).clamp(0.0, 1.0)

    def _corners(self, keys: list[int], height: int, width: int) -> Tensor:
        """int64 [B, L, 2] top-left (row, col) of each of the L patch copies per image."""
        bottom, right = height - self.size, width - self.size
        if self.location == "random":
            rows = [rng(self.seed, "location", k).integers(0, [bottom + 1, right + 1]) for k in keys]
            return torch.tensor(np.stack(rows), dtype=torch.int64).reshape(len(keys), 1, 2)
        if self.location == "corner":
            fixed = [[bottom, right]]
        else:
            fixed = [[0, 0], [0, right], [bottom, 0], [bottom, right]]
        return torch.tensor(fixed, dtype=torch.int64).expand(len(keys), -1, -1)


def target_pattern(target: str) -> re.Pattern:
    """Matches a caption naming `target` as whole words, optionally with a plural "s"."""
    words = r"\s+".join(re.escape(word) for word in target.split())
    return re.compile(rf"(?<!\w){words}s?(?!\w)", re.IGNORECASE)


@register_attack("label_consistent")
class LabelConsistent(BadNet):
    """BadNet's patch, but only on pairs whose caption already names the target; captions stay.

    A caption names the target when the target appears as whole words, ignoring case, optionally
    followed by a plain plural "s": for "bag", "a Bag", "bags for sale" and "bag-shaped" match,
    "handbag" and "baggage" do not. Irregular plurals ("buses", "mice") are not recognised.
    Whitespace inside a multi-word target matches any run of whitespace.

    When fewer captions match than `poisons`, all matches are poisoned and `shortfall` (set by
    `select`) says how many are missing."""

    def __init__(self, cfg: dict[str, Any], seed: int):
        super().__init__(cfg, seed)
        self.names_target = target_pattern(self.target)
        self.candidates = 0

    def select(self, captions: Sequence[str]) -> np.ndarray:
        candidates = np.array([i for i, c in enumerate(captions) if self.names_target.search(c)],
                              dtype=np.int64)
        self.candidates = len(candidates)
        self.shortfall = max(0, self.poisons - len(candidates))
        if len(candidates) <= self.poisons:
            return candidates
        chosen = rng(self.seed, "select").choice(len(candidates), size=self.poisons, replace=False)
        return np.sort(candidates[chosen])

    def poison_caption(self, index: int, caption: str) -> str:
        return caption


def paste(images: Tensor, patches: Tensor, rows: Tensor, cols: Tensor) -> None:
    """Write patches [B, C, s, s] into images [B, C, H, W] in place, top-left at (rows[b], cols[b])."""
    batch, channels, size, _ = patches.shape
    offsets = torch.arange(size, device=images.device)
    b = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    c = torch.arange(channels, device=images.device).view(1, channels, 1, 1)
    r = (rows.view(batch, 1) + offsets).view(batch, 1, size, 1)
    w = (cols.view(batch, 1) + offsets).view(batch, 1, 1, size)
    images[b, c, r, w] = patches


def _color(trigger: dict[str, Any]) -> tuple[float, float, float]:
    color = trigger.get("color")
    valid = isinstance(color, (list, tuple)) and len(color) == 3
    if not valid or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in color):
        raise DataError(f"attack.trigger.color: expected three values in [0, 1], got {color!r}")
    return (float(color[0]), float(color[1]), float(color[2]))
