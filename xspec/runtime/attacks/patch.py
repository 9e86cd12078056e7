"""Patch triggers: BadNet and its label-consistent variant."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xspec.errors import DataError
from xspec.runtime.attacks.base import TemplatedAttack, rng


class BadNet(TemplatedAttack):
    """A size×size patch pasted on the resized image; poisoned captions name the target.

    Patterns: `cleanclip` is the paper's trigger as its code computes it (`cleanclip_trigger`:
    fresh noise per image, close to uniform after the original's byte cast); `gaussian_per_image`
    and `gaussian_fixed` paste N(0, 1) clamped to [0, 1] (a different trigger: mean ~0.31, two
    thirds of the pixels at exactly 0 or 1), fresh per image or one seeded pattern for every
    image (classic BadNet); `solid` pastes `color`. See docs/FIDELITY.md."""

    def __init__(self, cfg: Any, seed: int):
        super().__init__(cfg, seed)
        trigger = cfg.trigger
        self.size, self.pattern, self.location = trigger.size, trigger.pattern, trigger.location
        self.color = tuple(trigger.color) if self.pattern == "solid" else None

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        _, _, height, width = images.shape
        if self.size > min(height, width):
            raise DataError(f"attack.trigger.size: {self.size} exceeds the image size {height}x{width}")
        key_list = [int(k) for k in keys.tolist()]
        corners = self._corners(key_list, height, width).to(images.device)
        if self.pattern == "cleanclip":
            return cleanclip_trigger(images, self._noise(key_list).to(images.device), corners)
        patches = self._noise(key_list).clamp(0.0, 1.0) if self.pattern.startswith("gaussian") \
            else self._solid(len(key_list))
        out = images.clone()
        for slot in range(corners.shape[1]):
            paste(out, patches.to(device=images.device, dtype=images.dtype),
                  corners[:, slot, 0], corners[:, slot, 1])
        return out

    def _noise(self, keys: list[int]) -> Tensor:
        """float32 [B, 3, size, size] standard normal: one draw per key, or one shared draw."""
        shape = (3, self.size, self.size)
        if self.pattern == "gaussian_fixed":
            noise = rng(self.seed, "noise").standard_normal(shape)
            stacked = np.broadcast_to(noise, (len(keys), *shape))
        else:
            stacked = np.stack([rng(self.seed, "noise", k).standard_normal(shape) for k in keys])
        return torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32))

    def _solid(self, n: int) -> Tensor:
        shape = (3, self.size, self.size)
        patch = torch.tensor(self.color, dtype=torch.float32)[:, None, None].expand(shape)
        return patch.expand(n, *shape)

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


class LabelConsistent(BadNet):
    """BadNet's patch, but only on pairs whose caption already names the target; captions stay.

    A caption names the target when the target appears as whole words, ignoring case, optionally
    followed by a plain plural "s": for "bag", "a Bag", "bags for sale" and "bag-shaped" match,
    "handbag" and "baggage" do not. Irregular plurals ("buses", "mice") are not recognised.
    Whitespace inside a multi-word target matches any run of whitespace.

    With `match = "substring"`, a caption names the target when it contains it, case-sensitive
    (the original's `args.label in caption`, backdoor/create_backdoor_data.py:53): "handbag"
    matches "bag", "Bag" does not.

    When fewer captions match than `poisons`, all matches are poisoned and `shortfall` (set by
    `select`) says how many are missing."""

    def __init__(self, cfg: Any, seed: int):
        super().__init__(cfg, seed)
        self.names_target = target_pattern(self.target)
        self.match = getattr(cfg, "match", "word")
        self.candidates = 0

    def names(self, caption: str) -> bool:
        if self.match == "substring":
            return self.target in caption
        return self.names_target.search(caption) is not None

    def select(self, captions: Sequence[str]) -> np.ndarray:
        candidates = np.array([i for i, c in enumerate(captions) if self.names(c)],
                              dtype=np.int64)
        self.candidates = len(candidates)
        self.shortfall = max(0, self.poisons - len(candidates))
        if len(candidates) <= self.poisons:
            return candidates
        chosen = rng(self.seed, "select").choice(len(candidates), size=self.poisons, replace=False)
        return np.sort(candidates[chosen])

    def poison_caption(self, index: int, caption: str) -> str:
        return caption


def cleanclip_trigger(images: Tensor, noise: Tensor, corners: Tensor) -> Tensor:
    """The paper's trigger, as attack-cleanclip's `backdoor/utils.py: apply_trigger` (patch_type
    "random") computes it: each image's per-channel mean plus the noise is pasted into the [0, 1]
    image, and torchvision's `ToPILImage` then casts the float image to bytes, which truncates
    255·x toward zero and wraps it modulo 256. The patch is therefore close to uniform noise
    (mean ~0.50, sd ~0.29), not a clipped Gaussian. Outside the patch a k/255 image comes back
    unchanged; other values are truncated to bytes, as the original's are.

    images: float32 [B, 3, H, W] in [0, 1]; noise: float32 [B, 3, s, s] standard normal;
    corners: int64 [B, L, 2] top-left (row, col) of each of the L copies of the patch."""
    out = images.clone()
    # One reduction per image, as the original computes it, so the float32 sums agree bitwise.
    means = torch.stack([image.mean((1, 2), keepdim=True) for image in images])
    patches = (means + noise).to(images.dtype)
    for slot in range(corners.shape[1]):
        paste(out, patches, corners[:, slot, 0], corners[:, slot, 1])
    wrapped = torch.remainder(torch.trunc(out * 255).to(torch.int64), 256)
    return wrapped.to(images.dtype) / 255


def paste(images: Tensor, patches: Tensor, rows: Tensor, cols: Tensor) -> None:
    """Write patches [B, C, s, s] into images [B, C, H, W] in place, top-left at (rows[b], cols[b])."""
    batch, channels, size, _ = patches.shape
    offsets = torch.arange(size, device=images.device)
    b = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    c = torch.arange(channels, device=images.device).view(1, channels, 1, 1)
    r = (rows.view(batch, 1) + offsets).view(batch, 1, size, 1)
    w = (cols.view(batch, 1) + offsets).view(batch, 1, 1, size)
    images[b, c, r, w] = patches
