"""`attack.resize = "squash"`: poisoned and triggered images are squashed to a square before the
trigger, as the original code does (backdoor/utils.py:20); clean images stay centre-cropped."""

import numpy as np
import pytest
import torch
from PIL import Image

from xspec.compiler.plan import compile_spec
from xspec.runtime.attacks import make_attack
from xspec.runtime.data import FileImages
from xspec.runtime.pipeline import EvalBatch, TrainBatch, poisoned_copy
from xspec.spec.load import load_spec

SIZE = 16


@pytest.fixture
def wide_images(tmp_path):
    """Two 72 x 24 images whose left, middle and right thirds differ: a centre crop keeps only
    the middle third."""
    paths = []
    for i in range(2):
        pixels = np.zeros((24, 72, 3), dtype=np.uint8)
        pixels[:, :24], pixels[:, 24:48], pixels[:, 48:] = 40 + i, 120, 220 - i
        path = tmp_path / f"wide{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return FileImages(paths, SIZE)


def attack(resize):
    return make_attack({"kind": "badnet", "target": "bag", "poisons": 1, "resize": resize,
                        "trigger": {"size": 4, "pattern": "cleanclip", "location": "corner"}}, 0)


def test_squash_resizes_the_whole_image_to_a_square(wide_images):
    _, cropped = wide_images.load([0])
    _, squashed = wide_images.load([0], squash=True)
    with Image.open(wide_images.paths[0]) as image:
        expected = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
    assert torch.equal(squashed[0], torch.from_numpy(expected.copy()).permute(2, 0, 1))
    assert squashed[0, 0, 8, 0] < 60 and squashed[0, 0, 8, -1] > 200
    assert (cropped[0, 0, :, 2:-2] == 120).all()  # the crop lost both outer thirds


def tokens(texts):
    return torch.zeros(len(texts), 4, dtype=torch.long)


@pytest.mark.parametrize("resize", ["crop", "squash"])
def test_training_poisons_the_squashed_image_and_keeps_clean_ones_cropped(wide_images, resize):
    badnet = attack(resize)
    recipe = TrainBatch(wide_images, ["a", "b"], np.array([True, False]), badnet, tokens, 0,
                        {"image", "text"})
    batch = recipe((1, [0, 1]))
    _, cropped = wide_images.load([0, 1])
    _, square = wide_images.load([0], squash=True)
    base = square if resize == "squash" else cropped[:1]
    assert torch.equal(batch["image"][0], poisoned_copy(base, torch.tensor([0]), badnet)[0])
    assert torch.equal(batch["image"][1], cropped[1])


def test_triggered_evaluation_images_are_squashed_too(wide_images):
    badnet = attack("squash")
    kept, clean, triggered = EvalBatch(wide_images, badnet, True)([0, 1])
    _, cropped = wide_images.load([0, 1])
    assert torch.equal(clean, cropped)
    _, square = wide_images.load([0, 1], squash=True)
    keys = torch.tensor(kept) + (1 << 40)
    assert torch.equal(triggered, poisoned_copy(square, keys, badnet))


def test_squash_changes_the_ids_and_crop_stays_out_of_the_config(write_spec, base_spec):
    crop = compile_spec(load_spec(write_spec(base_spec)))
    squash = compile_spec(load_spec(write_spec(base_spec.replace(
        "poisons = 16", 'poisons = 16\nresize = "squash"', 1))))
    assert {n.id for n in crop.nodes.values()}.isdisjoint(n.id for n in squash.nodes.values())
    assert all("resize" not in n.identity.get("attack", n.identity) for n in crop.nodes.values())
    assert {n.identity["resize"] for n in squash.of_kind("poison")} == {"squash"}
