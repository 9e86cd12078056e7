"""Triggers spread over the whole image: blended noise, a WaNet warp and a SIG sinusoid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xspec.runtime.attacks.base import TemplatedAttack, rng



class Blended(TemplatedAttack):
    """(1 - alpha)·image + alpha·noise on every pixel (Chen et al. 2017); DESIGN.md's
    0.8·image + 0.2·noise is alpha = 0.2.

    The noise is uniform in [0, 1], as in the paper's code (`torch.rand`), so the blend stays in
    the image range (the final clamp only absorbs rounding). The pattern names are BadNet's:
    `gaussian_fixed` is one seeded noise image for every sample, `gaussian_per_image` fresh noise
    per sample key; only that choice carries over, the noise itself is uniform."""

    def __init__(self, cfg: Any, seed: int):
        super().__init__(cfg, seed)
        self.alpha, self.pattern = cfg.alpha, cfg.pattern
        self._fixed: dict[tuple[int, int, str], Tensor] = {}

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        noise = self.noise([int(k) for k in keys.tolist()], images.shape[2], images.shape[3],
                           images.device)
        blended = (1.0 - self.alpha) * images + self.alpha * noise.to(images.dtype)
        return blended.clamp(0.0, 1.0)

    def noise(self, keys: list[int], height: int, width: int, device: torch.device) -> Tensor:
        """float32 [B or 1, 3, H, W] uniform in [0, 1]."""
        shape = (3, height, width)
        if self.pattern == "gaussian_per_image":
            draws = [rng(self.seed, "blend", k).random(shape, dtype=np.float32) for k in keys]
            stacked = np.stack(draws)
            return torch.from_numpy(stacked).to(device)
        cache = (height, width, str(device))
        if cache not in self._fixed:
            fixed = rng(self.seed, "blend").random(shape, dtype=np.float32)
            self._fixed[cache] = torch.from_numpy(fixed)[None].to(device)
        return self._fixed[cache]


class WaNet(TemplatedAttack):
    """One fixed warping field (Nguyen & Tran 2021), drawn from the attack seed, for every key.

    A `grid`×`grid`×2 field uniform in [-1, 1] is divided by its mean absolute value, upsampled
    bicubically to H×W and added, times `strength`/H, to the identity sampling grid; the result is
    clamped to [-1, 1] and resampled with bilinear `grid_sample(align_corners=True)`. Border
    padding only guards rounding: the clamped grid never leaves the image."""

    def __init__(self, cfg: Any, seed: int):
        super().__init__(cfg, seed)
        self.grid, self.strength = cfg.grid, cfg.strength
        self._fields: dict[tuple[int, int, str], Tensor] = {}

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        batch, _, height, width = images.shape
        field = self.field(height, width, images.device).to(images.dtype)
        warped = F.grid_sample(images, field.expand(batch, -1, -1, -1), mode="bilinear",
                               padding_mode="border", align_corners=True)
        return warped.clamp(0.0, 1.0)

    def field(self, height: int, width: int, device: torch.device) -> Tensor:
        """float32 [1, H, W, 2] sampling grid (x, y) in [-1, 1]; built on the CPU, so every
        device warps with the same field."""
        cache = (height, width, str(device))
        if cache not in self._fields:
            flow = rng(self.seed, "warp").uniform(-1.0, 1.0, (1, 2, self.grid, self.grid))
            flow = torch.from_numpy(flow / np.abs(flow).mean()).float()
            flow = F.interpolate(flow, size=(height, width), mode="bicubic", align_corners=True)
            rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                                        indexing="ij")
            identity = torch.stack((cols, rows), dim=-1)[None]
            grid = identity + self.strength * flow.permute(0, 2, 3, 1) / height
            self._fields[cache] = grid.clamp(-1.0, 1.0).to(device)
        return self._fields[cache]


class Sig(TemplatedAttack):
    """amplitude·sin(2π·j·frequency/W) added to every pixel of column j, in every row and channel,
    then clamped to [0, 1] (Barni et al. 2019). The paper's code uses amplitude 60/255 and
    frequency 6, and blends rather than adds: (1 - blend)·image + blend·signal with blend 0.2."""

    def __init__(self, cfg: Any, seed: int):
        super().__init__(cfg, seed)
        self.amplitude, self.frequency, self.blend = cfg.amplitude, cfg.frequency, cfg.blend

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        width = images.shape[3]
        signal = self.signal(width).to(device=images.device, dtype=images.dtype)
        if self.blend is not None:  # the original: 0.2 * signal + 0.8 * image (utils.py:84-86)
            return ((1 - self.blend) * images + self.blend * signal).clamp(0.0, 1.0)
        return (images + signal).clamp(0.0, 1.0)

    def signal(self, width: int) -> Tensor:
        """float32 [W], computed in float64."""
        columns = np.arange(width, dtype=np.float64)
        wave = self.amplitude * np.sin(2 * math.pi * columns * self.frequency / width)
        return torch.from_numpy(wave.astype(np.float32))
