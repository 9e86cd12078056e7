import numpy as np
import pytest
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from xspec.errors import DataError
from xspec.extend.registry import ATTACKS, resolve
from xspec.runtime.attacks import make_attack

SIZE = 6
KEYS = torch.arange(16, dtype=torch.int64) + 1000


def badnet(pattern="gaussian_per_image", location="random", seed=0, poisons=30, **trigger):
    cfg = {
        "kind": "badnet",
        "target": "bag",
        "poisons": poisons,
        "trigger": {"size": SIZE, "pattern": pattern, "location": location, **trigger},
    }
    return make_attack(cfg, seed)


def images(n=16, h=32, w=32, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def changed_mask(before, after):
    return (before != after).any(dim=1)


def bounding_box(mask):
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_registry_and_unknown_kind():
    assert {"badnet", "none"} <= set(ATTACKS.names())
    with pytest.raises(DataError, match=r"attack.kind: unknown value 'wanet2'; allowed: .*badnet.*none"):
        make_attack({"kind": "wanet2"}, 0)


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"pattern": "checker"}, "attack.trigger.pattern: unknown value 'checker'"),
        ({"location": "centre"}, "attack.trigger.location: unknown value 'centre'"),
        ({"pattern": "solid", "color": [1.0, 2.0, 0.0]}, "attack.trigger.color"),
    ],
)
def test_bad_trigger_config(trigger, message):
    with pytest.raises(DataError, match=message):
        badnet(**{"pattern": "gaussian_fixed", "location": "random", **trigger})


def test_select_is_deterministic_sorted_and_sized():
    captions = [f"caption {i}" for i in range(1000)]
    first = badnet(seed=3).select(captions)
    assert first.dtype == np.int64
    assert len(first) == 30 and len(set(first.tolist())) == 30
    assert np.all(np.diff(first) > 0)
    assert first.min() >= 0 and first.max() < 1000
    np.testing.assert_array_equal(first, badnet(seed=3).select(captions))
    assert not np.array_equal(first, badnet(seed=4).select(captions))


def test_select_rejects_more_poisons_than_samples():
    with pytest.raises(DataError, match="31 poisons requested but the dataset has only 30 samples"):
        badnet(poisons=31).select(["c"] * 30)


def test_poison_caption_is_a_filled_template_chosen_per_index():
    attack = badnet(seed=1)
    filled = {t("bag") for t in OPENAI_IMAGENET_TEMPLATES}
    captions = [attack.poison_caption(i, "a dog on grass") for i in range(200)]
    assert set(captions) <= filled
    assert len(set(captions)) > 20
    assert captions == [badnet(seed=1).poison_caption(i, "other") for i in range(200)]
    assert captions != [badnet(seed=2).poison_caption(i, "x") for i in range(200)]


def test_apply_is_pure_and_deterministic():
    attack = badnet()
    clean = images()
    copy = clean.clone()
    out = attack.apply(clean, KEYS)
    assert torch.equal(clean, copy)
    assert torch.equal(out, badnet().apply(copy, KEYS))
    assert torch.equal(out[3:5], attack.apply(clean[3:5], KEYS[3:5]))


@pytest.mark.parametrize(("h", "w"), [(32, 32), (12, 40)])
def test_random_patch_is_confined_and_in_range(h, w):
    clean = images(h=h, w=w)
    out = badnet().apply(clean, KEYS)
    assert out.min() >= 0 and out.max() <= 1
    boxes = set()
    for before, after in zip(clean, out):
        r0, r1, c0, c1 = bounding_box(changed_mask(before, after))
        assert r1 - r0 < SIZE and c1 - c0 < SIZE
        boxes.add((r0, c0))
    assert len(boxes) > 8


def test_per_image_noise_differs_between_keys():
    blank = torch.zeros(len(KEYS), 3, 32, 32)
    out = badnet(location="corner").apply(blank, KEYS)
    patches = out[:, :, -SIZE:, -SIZE:]
    assert len({tuple(p.flatten().tolist()) for p in patches}) == len(KEYS)
    assert torch.count_nonzero(out[:, :, :-SIZE, :]) == 0
    assert torch.count_nonzero(out[:, :, :, :-SIZE]) == 0


def test_fixed_pattern_is_shared_and_noise_is_clamped():
    blank = torch.full((len(KEYS), 3, 32, 32), 0.5)
    out = badnet(pattern="gaussian_fixed", location="random").apply(blank, KEYS)
    patches = []
    for image in out:
        r0, _, c0, _ = bounding_box((image != 0.5).any(dim=0))
        patches.append(image[:, r0 : r0 + SIZE, c0 : c0 + SIZE])
    assert all(torch.equal(p, patches[0]) for p in patches)
    assert (patches[0] == 0).any() and (patches[0] == 1).any()
    other_seed = badnet(pattern="gaussian_fixed", location="corner", seed=1).apply(blank, KEYS)
    assert not torch.equal(other_seed[0, :, -SIZE:, -SIZE:], patches[0])


def test_solid_four_corners():
    clean = torch.zeros(2, 3, 20, 24)
    out = badnet(pattern="solid", location="four_corners", color=[1.0, 1.0, 0.0]).apply(clean, KEYS[:2])
    expected = torch.zeros(2, 3, 20, 24)
    color = torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1)
    for rows in (slice(0, SIZE), slice(20 - SIZE, 20)):
        for cols in (slice(0, SIZE), slice(24 - SIZE, 24)):
            expected[:, :, rows, cols] = color
    assert torch.equal(out, expected)


def test_patch_larger_than_image_is_an_error():
    with pytest.raises(DataError, match="exceeds the image size 4x4"):
        badnet().apply(torch.zeros(1, 3, 4, 4), KEYS[:1])


def test_none_attack_is_identity():
    attack = make_attack({"kind": "none"}, 0)
    clean = images(4)
    assert attack.target is None
    assert attack.select(["a", "b"]).dtype == np.int64
    assert len(attack.select(["a", "b"])) == 0
    assert attack.poison_caption(0, "a cat") == "a cat"
    assert torch.equal(attack.apply(clean, KEYS[:4]), clean)
