"""The paper's BadNet trigger (`pattern = "cleanclip"`) against a copy of the original arithmetic."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from xspec.runtime.attacks import make_attack
from xspec.runtime.pipeline import to_unit

KEYS = torch.arange(24, dtype=torch.int64) + 5000


def reference_apply_trigger(image, noise, location, patch_size=16, four_corners=False,
                            cast="torchvision"):
    """attack-cleanclip `backdoor/utils.py: apply_trigger` (lines 15-91) for patch_type "random",
    copied; `torch.randn` and `random.randint` are replaced by the `noise` and `location`
    arguments so both sides use the same draw. `cast="byte"` is torchvision's float-to-PIL cast
    of the paper's time (`pic.mul(255).byte()`); the installed torchvision casts through numpy."""
    T1 = transforms.ToTensor()
    image = image.resize((224, 224))
    image = T1(image)
    mean = image.mean((1, 2), keepdim=True)
    noise = mean + noise
    if four_corners:
        image[:, : patch_size, : patch_size] = noise
        image[:, : patch_size, -patch_size:] = noise
        image[:, -patch_size:, : patch_size] = noise
        image[:, -patch_size:, -patch_size:] = noise
    else:
        h, w = location
        image[:, h:h + patch_size, w:w + patch_size] = noise
    if cast == "byte":
        return Image.fromarray(image.mul(255).byte().permute(1, 2, 0).numpy())
    return transforms.ToPILImage()(image)


def attack(location="random", pattern="cleanclip", size=16, seed=0):
    cfg = {"kind": "badnet", "target": "banana", "poisons": 10,
           "trigger": {"size": size, "pattern": pattern, "location": location}}
    return make_attack(cfg, seed)


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 1, 3))
    pixels = np.clip(base + rng.integers(-60, 61, (224, 224, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("cast", ["torchvision", "byte"])
@pytest.mark.parametrize("location", ["random", "four_corners"])
def test_bit_exact_with_the_original_for_the_same_draw(location, cast):
    badnet = attack(location)
    pictures = [photo(i) for i in range(len(KEYS))]
    batch = to_unit(torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1)
                                 for p in pictures]))
    out = badnet.apply(batch, KEYS)
    noise = badnet._noise(KEYS.tolist())
    corners = badnet._corners(KEYS.tolist(), 224, 224)
    for i, picture in enumerate(pictures):
        expected = reference_apply_trigger(picture, noise[i], corners[i, 0].tolist(),
                                           four_corners=location == "four_corners", cast=cast)
        assert torch.equal(out[i], transforms.ToTensor()(expected)), i


def patch_pixels(pattern: str) -> torch.Tensor:
    grey = torch.full((len(KEYS), 3, 64, 64), 0.45)
    out = attack("corner", pattern).apply(grey, KEYS)
    return out[:, :, -16:, -16:].flatten()


def test_cleanclip_patch_is_close_to_uniform_noise():
    values = patch_pixels("cleanclip")
    assert abs(values.mean().item() - 0.50) < 0.02
    assert abs(values.std().item() - 0.29) < 0.02
    assert ((values == 0) | (values == 1)).float().mean().item() < 0.02


def test_clamped_gaussian_is_a_different_trigger():
    values = patch_pixels("gaussian_per_image")
    assert abs(values.mean().item() - 0.31) < 0.02
    assert abs(((values == 0) | (values == 1)).float().mean().item() - 2 / 3) < 0.03


def test_cleanclip_keeps_the_rest_of_the_image_and_draws_per_key():
    clean = to_unit(torch.randint(0, 256, (len(KEYS), 3, 32, 32), dtype=torch.uint8))
    out = attack("corner", size=6).apply(clean, KEYS)
    assert torch.equal(out[:, :, :-6, :], clean[:, :, :-6, :])
    assert torch.equal(out[:, :, :, :-6], clean[:, :, :, :-6])
    patches = {tuple(p.flatten().tolist()) for p in out[:, :, -6:, -6:]}
    assert len(patches) == len(KEYS)
    assert torch.equal(out, attack("corner", size=6).apply(clean, KEYS))
