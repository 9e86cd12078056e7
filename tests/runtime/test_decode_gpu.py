"""decode = "nvjpeg": refused on CPU-only runs and for non-JPEG files; its arithmetic (run here
on the CPU through torchvision's libjpeg decoder) is the "exact" mode's within a few levels."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from xspec.errors import DataError, SpecError
from xspec.runtime import decode_gpu
from xspec.runtime.data import FileImages
from xspec.runtime.decode import decode
from xspec.spec.load import load_spec

SIZES = [(256, 256), (300, 257), (257, 300), (640, 480), (481, 960)]


def _photo(path, width, height, seed, fmt="JPEG"):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    noise = rng.normal(0, 8, (height, width, 3))
    Image.fromarray(np.clip(field + noise, 0, 255).astype(np.uint8)).save(path, format=fmt)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = [folder / f"{i}.jpg" for i in range(len(SIZES))]
    for i, ((w, h), path) in enumerate(zip(SIZES, paths)):
        _photo(path, w, h, i)
    return paths


def test_batched_decode_matches_exact_within_a_few_levels_on_cpu(photos):
    out = decode_gpu.decode_batch(photos, [str(p) for p in photos], 224, device="cpu")
    for path, pixels in zip(photos, out):
        exact = decode(path, 224, "exact").int()
        assert pixels.shape == (3, 224, 224) and pixels.dtype == torch.uint8
        assert pixels.device.type == "cpu"
        diff = (pixels.int() - exact).abs()
        assert diff.float().mean() < 1.0 and diff.max() <= 8  # same picture, rounding apart


def test_squash_resizes_the_whole_image(photos):
    wide = photos[3]  # 640 x 480: the centre square and the squashed image differ
    (squashed,) = decode_gpu.decode_batch([wide], ["w"], 224, squash=True, device="cpu")
    reference = decode(wide, 224, "exact", squash=True).int()
    assert (squashed.int() - reference).abs().float().mean() < 1.0
    (cropped,) = decode_gpu.decode_batch([wide], ["w"], 224, device="cpu")
    assert (squashed.int() - cropped.int()).abs().float().mean() > 5


def test_file_like_sources_and_non_jpeg_refused(photos, tmp_path):
    (from_bytes,) = decode_gpu.decode_batch([io.BytesIO(photos[0].read_bytes())], ["b"], 224,
                                            device="cpu")
    (from_path,) = decode_gpu.decode_batch([photos[0]], ["p"], 224, device="cpu")
    assert torch.equal(from_bytes, from_path)
    png = tmp_path / "x.png"
    _photo(png, 256, 256, 0, fmt="PNG")
    with pytest.raises(DataError, match=r'x.png: not a JPEG file; decode = "nvjpeg"'):
        decode_gpu.decode_batch([photos[0], png], ["a", str(png)], 224, device="cpu")


def test_cpu_only_machine_refused_before_reading(photos, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    images = FileImages([str(p) for p in photos], 224, decode="nvjpeg")
    with pytest.raises(DataError, match="CUDA device, and this machine has none"):
        images.load([0, 1])


def test_file_images_route_batches_and_skip_damaged_jpegs(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = decode_gpu.decode_batch
    monkeypatch.setattr(decode_gpu, "decode_batch",  # the CPU fallback stands in for the GPU
                        lambda *a, **k: real(*a, **{**k, "device": "cpu"}))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[1].read_bytes()[:200])
    paths = [str(photos[0]), str(broken), str(photos[2])]
    kept, pixels = FileImages(paths, 224, decode="nvjpeg").load([0, 1, 2])
    assert kept == [0, 2] and pixels.shape == (2, 3, 224, 224)
    with pytest.raises(DataError, match="broken.jpg"):
        FileImages(paths, 224, "fail", decode="nvjpeg").load([0, 1, 2])


@pytest.mark.parametrize("run, expected", [
    ('device = "cpu"', 'data.train.decode = "nvjpeg" decodes on a CUDA device; run.device = '
     '"cpu" has none'),
    ("workers = 2", "set run.workers = 0"),
])
def test_spec_refuses_nvjpeg_without_cuda_or_with_workers(write_spec, base_spec, tmp_path,
                                                          run, expected):
    (tmp_path / "p.csv").write_text("image,caption\n")
    text = base_spec.replace('train = { format = "fashion_mnist", size = 256 }',
                             f'train = {{ format = "csv", path = "{tmp_path}/p.csv", '
                             'decode = "nvjpeg" }') + f"\n[run]\n{run}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    assert expected in str(info.value)
