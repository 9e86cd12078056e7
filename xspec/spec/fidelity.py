"""Training options that give the original code's behaviour (docs/FIDELITY.md, round three).

`[pretrain]` and `[clean]` inherit these fields. Each is left out of a node's config at its
default (each is marked `OmitAtDefault`), so adding them kept every existing id.

The batch size is always the global one (pairs per optimiser step over all devices). It may be
written in the per-device form the original code's `--batch_size` divides into
(`src/main.py:68`): `batch_size = { per_device = 256, devices = 8 }` is `batch_size = 2048`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator

from xspec.spec.base import NotBool, OmitAtDefault, XspecModel

LN_100 = math.log(100)
# The options that matter only when the objective has SSL (a node without SSL leaves them out).
SSL_ONLY = ("eda", "letterless", "image_augment")
Precision = Literal["bf16", "fp32", "fp32-forward+fp16-loss"]


def global_batch(value):
    """`{ per_device = P, devices = D }` -> P * D; anything else unchanged."""
    if not isinstance(value, dict) or "zip" in value:
        return value
    if set(value) != {"per_device", "devices"}:
        raise ValueError("a number (the global batch) or { per_device = <pairs per "
                         f"device>, devices = <count> }}; got keys {', '.join(sorted(value))}")
    per, devices = value["per_device"], value["devices"]
    for name, number in (("per_device", per), ("devices", devices)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"{name}: expected a positive integer, got {number!r}")
    return per * devices


class FidelityOptions(XspecModel):
    precision: Annotated[Precision, OmitAtDefault] = "bf16"
    """bf16: forward and loss under bf16 autocast on a GPU, fp32 on the CPU. fp32: fp32
    throughout. fp32-forward+fp16-loss: the original code's scheme (forward in fp32, the loss
    under fp16 autocast, a GradScaler)."""
    logit_scale_max: Annotated[float, Field(gt=0, le=20), NotBool, OmitAtDefault] = LN_100
    """The learnable temperature's log is clamped to [0, this] after every step: ln 100; the
    original code clamps at 4.6052."""
    truncation: Annotated[Literal["eot", "drop_eot"], OmitAtDefault] = "eot"
    """Captions over the context length: truncated with the end-of-text token kept in the last
    slot (open_clip), or cut after 77 tokens with no end token, as the original code does."""
    eda: Annotated[Literal["xspec", "cleanclip"], OmitAtDefault] = "xspec"
    """SSL caption augmentation: xspec's EDA, or the original code's (its cleaning drops digits
    and apostrophes, its stop words, random insertion of the first synonym of any word)."""
    image_augment: Annotated[Literal["crop", "full_image"], OmitAtDefault] = "crop"
    """Where SSL's AutoAugment (ImageNet policy) applies: torchvision v2 on the cropped image,
    or, as the original code does, v1 on the full decoded image before the resize and crop."""
    letterless: Annotated[Literal["keep", "skip"], OmitAtDefault] = "keep"
    """SSL pairs whose caption has no letters (the original's EDA raises on them): trained on
    with the caption as their augmentation, or left out of the run."""

    @field_validator("batch_size", mode="before", check_fields=False)
    @classmethod
    def _per_device_batch(cls, value):
        return global_batch(value)
