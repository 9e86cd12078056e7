"""Decode modes of a file source: "exact" is CleanCLIP's resize-then-centre-crop, "crop_first"
resizes only the centre square (within 2/255 of exact), "draft" lets libjpeg downscale."""

import numpy as np
import pytest
import torch
from PIL import Image

from xspec.runtime.data import open_pairs
from xspec.runtime.decode import decode
from xspec.spec.schema import CsvPairs

SIZES = [(256, 256), (300, 257), (257, 300), (512, 300), (269, 324), (640, 480), (481, 960),
         (1000, 512), (225, 224)]


def _photo(path, width, height, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    noise = rng.normal(0, 8, (height, width, 3))
    Image.fromarray(np.clip(field + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


def _reference(path, size):
    """The whole image resized on its short side (bicubic), then its centre square: the
    arithmetic xspec used before decode modes existed."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = size / min(image.size)
        w = max(size, round(image.width * scale))
        h = max(size, round(image.height * scale))
        image = image.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for i, (w, h) in enumerate(SIZES):
        path = folder / f"{i}.jpg"
        _photo(path, w, h, i)
        paths.append(path)
    return paths


def test_exact_is_resize_then_centre_crop(photos):
    for path in photos:
        assert torch.equal(decode(path, 224, "exact"), _reference(path, 224))


def test_crop_first_stays_within_two_levels_of_exact(photos):
    differing = 0
    for path in photos:
        fast, exact = decode(path, 224, "crop_first").int(), decode(path, 224, "exact").int()
        assert fast.shape == (3, 224, 224)
        assert (fast - exact).abs().max() <= 2
        differing += int((fast != exact).sum())
    assert differing > 0  # it is an approximation, and the docs say so


def test_draft_decodes_large_jpegs_at_reduced_scale_and_keeps_small_ones(photos):
    small, large = photos[0], photos[7]  # 256 px short side: no reduction; 512: 1/2
    assert torch.equal(decode(small, 224, "draft"), decode(small, 224, "crop_first"))
    drafted, exact = decode(large, 224, "draft").int(), decode(large, 224, "exact").int()
    assert drafted.shape == (3, 224, 224)
    assert not torch.equal(drafted, exact)
    assert (drafted - exact).abs().float().mean() < 3  # the same picture, other pixels


def test_decode_mode_reaches_the_source_and_stays_out_of_default_configs(photos, tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("image,caption\n" + "".join(f"{p},photo {i}\n" for i, p in enumerate(photos)))
    cfg = {"format": "csv", "path": str(csv), "image_key": "image", "caption_key": "caption"}
    pairs = open_pairs({**cfg, "decode": "crop_first"}, 224)
    _, pixels = pairs.images.load([3])
    assert torch.equal(pixels[0], decode(photos[3], 224, "crop_first"))
    assert "decode" not in CsvPairs(format="csv", path="x").model_dump(mode="json")
    assert CsvPairs(format="csv", path="x", decode="draft").model_dump(mode="json")["decode"] \
        == "draft"
    with pytest.raises(ValueError):
        CsvPairs(format="csv", path="x", decode="fast")
    with pytest.raises(ValueError):
        decode(photos[0], 224, "fast")


def test_cleanclip_mode_is_torchvision_resize_and_centre_crop(photos):
    """The original's preprocessing (pkgs/openai/clip.py:73), run through torchvision itself."""
    from torchvision import transforms

    original = transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224), transforms.PILToTensor()])
    differs_from_exact = 0
    for path in photos:
        with Image.open(path) as image:
            expected = original(image.convert("RGB"))
        got = decode(path, 224, "cleanclip")
        assert torch.equal(got, expected)
        differs_from_exact += not torch.equal(got, decode(path, 224, "exact"))
    assert differs_from_exact > 0  # e.g. 269 x 324: torchvision truncates 269.8 to 269
