"""A frequency-domain backdoor (after FTrojan, Wang et al., ECCV 2022), as an xspec plugin.

The trigger is invisible in pixel space: every `block`×`block` tile of each colour channel is
moved to the DCT domain, `magnitude` is added to a few mid/high frequency coefficients, and the
tile is moved back. It is the same for every image (no randomness), so the evaluation trigger
set is fixed. Poisoned pairs are drawn and captioned as for BadNet (`TemplatedAttack`).

    [attack]
    kind = "frequency"
    target = "bag"
    poisons = 400
    magnitude = 0.2
    frequencies = [[3, 5], [5, 3]]

Only pydantic and xspec are imported here at module level: `xspec plan` loads this file to
validate the spec and never imports torch; `apply` imports it in the node process.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from xspec.extend import PositiveInt, XspecModel, register_attack
from xspec.runtime.attacks.base import TemplatedAttack

# Bump when the trigger changes for the same fields: it is part of the node ids.
VERSION = "1"


class FrequencyAttack(TemplatedAttack):
    def __init__(self, spec: FrequencySpec, seed: int):
        super().__init__(spec, seed)
        self.block, self.magnitude = spec.block, spec.magnitude
        self.frequencies = [tuple(f) for f in spec.frequencies]

    def apply(self, images, keys):
        import torch

        batch, channels, height, width = images.shape
        b = self.block
        if height % b or width % b:
            from xspec.errors import DataError

            raise DataError(f"attack.block: {b} does not divide the image size {height}x{width}")
        dct = _dct_matrix(b, images.device, images.dtype)
        tiles = images.reshape(batch, channels, height // b, b, width // b, b).transpose(3, 4)
        coefficients = dct @ tiles @ dct.T
        bump = torch.zeros(b, b, device=images.device, dtype=images.dtype)
        for u, v in self.frequencies:
            bump[u, v] = self.magnitude * b  # orthonormal DCT: a coefficient of b = 1 per pixel
        back = dct.T @ (coefficients + bump) @ dct
        return back.transpose(3, 4).reshape(batch, channels, height, width).clamp(0.0, 1.0)


def _dct_matrix(n: int, device, dtype):
    """The orthonormal DCT-II matrix: coefficients = D @ tile @ D.T, tile = D.T @ c @ D."""
    import torch

    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=dtype)


@register_attack(FrequencyAttack, version=VERSION)
class FrequencySpec(XspecModel):
    """A fixed perturbation of a few DCT coefficients in every tile of the image (FTrojan)."""

    kind: Literal["frequency"]
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    block: PositiveInt = 8
    """Tile side of the block DCT (8 as in JPEG); must divide the model's image size."""
    magnitude: Annotated[float, Field(gt=0, le=1)] = 0.2
    """Added to each chosen coefficient, in units of a uniform one-pixel step."""
    frequencies: Annotated[list[tuple[int, int]], Field(min_length=1)] = [(3, 5), (5, 3)]
    """(row, column) DCT coefficients to raise in every tile; (0, 0) is the tile's mean."""

    @model_validator(mode="after")
    def _inside_block(self):
        outside = [f for f in self.frequencies if not all(0 <= c < self.block for c in f)]
        if outside:
            raise ValueError(f"frequencies {outside} lie outside a {self.block}x{self.block} "
                             "block (attack.block)")
        return self
