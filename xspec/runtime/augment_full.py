"""AutoAugment where the original code applies it (`image_augment = "full_image"`).

attack-cleanclip augments an image for SSL with torchvision's v1 `AutoAugment()` (ImageNet
policy) on the full decoded image, read again from its file (`utils/augment_image.py:12-17`,
`src/data.py:173`), and only then resizes and centre-crops it (`pkgs/openai/clip.py:73`). xspec's
default applies v2 AutoAugment to the already cropped uint8 image (`xspec.runtime.augment`),
which is cheaper and sees the same pixels the model sees. A poisoned pair's file in the original
is its stored poisoned image (squashed to the model's size, trigger pasted), so here a poisoned
pair's augmentation starts from its poisoned copy.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import AutoAugment

from xspec.runtime.decode import _centre, _torchvision_centre

_AUTOAUGMENT_V1 = AutoAugment()  # the original's: v1, ImageNet policy


def _to_pil(image_uint8: torch.Tensor) -> Image.Image:
    return Image.fromarray(image_uint8.permute(1, 2, 0).numpy())


def _crop(image: Image.Image, size: int, mode: str) -> torch.Tensor:
    """Resize and centre-crop as the store's `decode` mode does ("cleanclip": torchvision's
    arithmetic; any other mode: "exact"'s, since crop_first/draft are decode-time shortcuts)."""
    centre = _torchvision_centre if mode == "cleanclip" else _centre
    w, h, left, top = centre(image.width, image.height, size)
    image = image.resize((w, h), Image.BICUBIC).crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def full_image_views(store, kept: list[int], images: torch.Tensor, poisoned: torch.Tensor,
                     seeds: torch.Tensor) -> torch.Tensor:
    """uint8 [n, 3, S, S]: v1 AutoAugment of each pair's full image (a poisoned pair: its
    poisoned copy; images held in memory: as held), then resized and centre-cropped. Each draw
    from its own seed, as `xspec.runtime.augment.augment_images` draws."""
    size = images.shape[-1]
    mode = getattr(store, "decode", "exact")
    out = torch.empty_like(images)
    generator = torch.default_generator
    state = generator.get_state()
    try:
        for i, (index, seed) in enumerate(zip(kept, seeds.tolist())):
            from_file = hasattr(store, "_source") and not bool(poisoned[i])
            if from_file:
                with Image.open(store._source(index)) as opened:
                    source = opened.convert("RGB")
            else:
                source = _to_pil(images[i])
            generator.manual_seed(seed)
            out[i] = _crop(_AUTOAUGMENT_V1(source), size, mode)
    finally:
        generator.set_state(state)
    return out
