"""decode = "nvjpeg": JPEG files decoded in batches on the CUDA device
(`torchvision.io.decode_jpeg(..., device="cuda")`, NVIDIA's nvjpeg), then resized on the device.

The arithmetic is the "exact" mode's (xspec/runtime/decode.py): the whole image resized on its
shorter side (bicubic, antialiased, PIL's a = -0.5 kernel as torch implements it for
`antialias=True`), then the centre square; the result comes back to the host as uint8, so
everything after decoding (poisoning, augmentation, pinning) is unchanged. nvjpeg's IDCT and
upsampling of chroma are not libjpeg's: pixels differ by a few levels (docs/FIDELITY.md), so the
mode is off in every paper spec. Only JPEG files: anything else is refused (DataError), since a
silent CPU decode of some files would mix two pixel pipelines in one run.

`device` is a parameter so that the same code runs on the CPU (libjpeg-turbo through
torchvision) where no GPU exists: that is what the tests exercise; a spec asking for "nvjpeg"
on a machine without CUDA is refused before any image is read (`require_cuda`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from xspec.errors import DataError
from xspec.runtime.decode import _centre

JPEG_MAGIC = b"\xff\xd8\xff"


def require_cuda(mode: str) -> None:
    """Refuse "nvjpeg" where torch sees no CUDA device (a CPU-only machine or build)."""
    if mode == "nvjpeg" and not torch.cuda.is_available():
        raise DataError('decode = "nvjpeg" decodes JPEGs on a CUDA device, and this machine '
                        'has none (torch.cuda.is_available() is False): use decode = "exact" '
                        '(or "crop_first"/"draft") on CPU-only runs')


def _read(source) -> bytes:
    if hasattr(source, "read"):
        return source.read()
    with open(source, "rb") as handle:
        return handle.read()


def _square(image: torch.Tensor, size: int, squash: bool = False) -> torch.Tensor:
    """uint8 [3, h, w] on any device -> uint8 [3, size, size] there ("exact" arithmetic, or
    the whole image resized to size x size with `squash`)."""
    w, h, left, top = (size, size, 0, 0) if squash else _centre(image.shape[2], image.shape[1],
                                                                 size)
    if (h, w) != tuple(image.shape[1:]):
        resized = F.interpolate(image[None].float(), size=(h, w), mode="bicubic",
                                antialias=True, align_corners=False)[0]
        image = resized.round_().clamp_(0, 255).to(torch.uint8)
    return image[:, top:top + size, left:left + size]


def decode_batch(sources: Sequence, names: Sequence[str], size: int, squash: bool = False,
                 device: str | torch.device = "cuda") -> list[torch.Tensor]:
    """uint8 [3, size, size] CPU tensors of JPEG files (paths or file-like objects), decoded
    on `device` in one batched call. `names` label the files in errors."""
    datas = []
    for source, name in zip(sources, names):
        data = _read(source)
        if not data.startswith(JPEG_MAGIC):
            raise DataError(f'image {name}: not a JPEG file; decode = "nvjpeg" reads JPEGs '
                            'only (use another decode mode for PNG/WebP sources)')
        datas.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if not datas:
        return []
    images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
    return [_square(image, size, squash).cpu() for image in images]
