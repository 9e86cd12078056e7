"""Decoding one image file to uint8 [3, size, size]: the three modes of a source's `decode` key.

- "exact" (the default, what CleanCLIP's `Resize(size)` + `CenterCrop(size)` compute,
  `pkgs/openai/clip.py:73`): resize the whole image (bicubic) so its shorter side is `size`,
  then cut the centre square. Most of the work is resizing pixels that the crop throws away.
- "crop_first": resize only the centre square, through PIL's `resize(box=...)`, which reads
  source pixels outside the box for the filter's support as the whole-image resize does. The
  sample positions are the same real numbers computed in another order, so a few pixels round
  the other way: at most 2/255 apart from "exact", on ~1-25 % of the values of an image
  (tests/runtime/test_decode.py pins the bound). 1.3-1.5x faster on img2dataset-sized files.
- "draft": "crop_first" after asking libjpeg to decode at 1/2, 1/4 or 1/8 scale in the DCT
  domain (PIL `Image.draft`), the smallest scale whose shorter side is still >= `size`. Pixels
  differ more (a DCT-domain box filter before the bicubic one): off in every paper spec,
  docs/FIDELITY.md has its row. Only JPEGs at least twice `size` on the shorter side gain.

- "cleanclip": the original code's own arithmetic, torchvision's `Resize(size)` then
  `CenterCrop(size)` on the PIL image (`pkgs/openai/clip.py:73`): its resized long side is
  truncated, not rounded, and its crop offset rounded, not floored, so on images whose sides do
  not scale to whole pixels it resamples at other positions than "exact" (which xspec used
  before this option existed, and which stays the default so that existing node ids keep
  their results). Bit-identical to torchvision's transforms (tests/runtime/test_decode.py).

- "nvjpeg": JPEGs decoded in batches on the CUDA device, xspec/runtime/decode_gpu.py (FileImages
  routes the whole batch there; `decode` itself refuses it).

`squash` (the original code's poisoned images, backdoor/utils.py:20) resizes the whole image to
size × size whatever the mode, except that "draft" decodes it at reduced scale first.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

DECODE_MODES = ("exact", "crop_first", "draft", "cleanclip")


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def _centre(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top) of the exact mode's resize-then-crop."""
    scale = size / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    return w, h, (w - size) // 2, (h - size) // 2


def _torchvision_centre(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """The same for torchvision's `Resize(size)` (long side truncated: `int(size * long /
    short)`) and `CenterCrop(size)` (offsets `int(round((h - size) / 2.0))`)."""
    if width <= height:
        w, h = size, int(size * height / width)
    else:
        w, h = int(size * width / height), size
    return w, h, int(round((w - size) / 2.0)), int(round((h - size) / 2.0))


def decode(source, size: int, mode: str = "exact", squash: bool = False) -> torch.Tensor:
    """uint8 [3, size, size] of the image file (a path or a file-like object)."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode {mode!r}: expected one of {', '.join(DECODE_MODES)}")
    with Image.open(source) as image:
        if mode == "draft" and image.format == "JPEG":
            image.draft("RGB", (size, size))
        image.load()
        if image.mode != "RGB":  # convert() would copy an RGB image for nothing
            image = image.convert("RGB")
    if squash:
        return _tensor(image.resize((size, size), Image.BICUBIC))
    centre = _torchvision_centre if mode == "cleanclip" else _centre
    w, h, left, top = centre(image.width, image.height, size)
    if mode in ("exact", "cleanclip"):
        resized = image.resize((w, h), Image.BICUBIC)
        return _tensor(resized.crop((left, top, left + size, top + size)))
    sx, sy = image.width / w, image.height / h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return _tensor(image.resize((size, size), Image.BICUBIC, box=box))
