import math
import typing

import numpy as np
import pytest
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from xspec.errors import DataError
from xspec.extend.registry import ATTACKS, resolve
from xspec.runtime.attacks import make_attack
from xspec.spec import schema

KEYS = torch.arange(16, dtype=torch.int64) + 1000
EVAL_KEYS = KEYS + (1 << 40)
TRIGGER = {"size": 6, "pattern": "gaussian_fixed", "location": "random"}
SCHEMA_CLASSES = typing.get_args(typing.get_args(schema.Attack)[0])


def kind_of(model):
    return typing.get_args(model.model_fields["kind"].annotation)[0]


def spec(kind, **fields):
    """The runtime config exactly as the compiler hands it over: a schema model's JSON dump."""
    model = {kind_of(cls): cls for cls in SCHEMA_CLASSES}[kind]
    extra = {} if kind == "none" else {"target": "bag", "poisons": 30}
    return model(kind=kind, **{**extra, **fields}).model_dump(mode="json")


VARIANTS = {
    "label_consistent": {"trigger": TRIGGER},
    "blended_fixed": {"alpha": 0.2, "pattern": "gaussian_fixed"},
    "blended_per_image": {"alpha": 0.3, "pattern": "gaussian_per_image"},
    "wanet": {"grid": 4, "strength": 0.5},
    "sig": {"amplitude": 0.1, "frequency": 6.0},
}


def attack(variant, seed=0, **fields):
    kind = "blended" if variant.startswith("blended") else variant
    return make_attack(spec(kind, **{**VARIANTS[variant], **fields}), seed)


def images(n=16, h=32, w=32, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_registry_covers_exactly_the_schema_kinds():
    kinds = {kind_of(cls) for cls in SCHEMA_CLASSES}
    assert len(kinds) >= 6 and kinds <= set(ATTACKS.names())  # plugins and builtins add more


@pytest.mark.parametrize("cls", SCHEMA_CLASSES, ids=lambda c: c.__name__)
def test_schema_defaults_resolve(cls):
    kind = kind_of(cls)
    resolved = make_attack(spec(kind), 0)
    assert type(resolved) is resolve(ATTACKS.get(kind).behaviour)
    assert resolved.target == (None if kind == "none" else "bag")
    assert resolved.shortfall == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_apply_is_pure_deterministic_and_in_range(variant):
    clean = images()
    copy = clean.clone()
    out = attack(variant).apply(clean, KEYS)
    assert torch.equal(clean, copy)
    assert out.shape == clean.shape and out.dtype == clean.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, clean)
    assert torch.equal(out, attack(variant).apply(copy, KEYS))
    assert torch.equal(out[3:5], attack(variant).apply(clean[3:5], KEYS[3:5]))


@pytest.mark.parametrize("variant", ["blended_fixed", "wanet", "sig"])
def test_templated_kinds_select_like_badnet(variant):
    captions = [f"caption {i}" for i in range(1000)]
    chosen = attack(variant, seed=3).select(captions)
    assert chosen.dtype == np.int64 and len(set(chosen.tolist())) == 30
    assert np.all(np.diff(chosen) > 0)
    badnet = make_attack(spec("badnet", trigger=TRIGGER), 3)
    np.testing.assert_array_equal(chosen, badnet.select(captions))
    assert not np.array_equal(chosen, attack(variant, seed=4).select(captions))
    with pytest.raises(DataError, match="31 poisons requested but the dataset has only 30 samples"):
        attack(variant, poisons=31).select(["c"] * 30)


@pytest.mark.parametrize("variant", ["blended_fixed", "wanet", "sig"])
def test_templated_kinds_rewrite_captions(variant):
    filled = {t("bag") for t in OPENAI_IMAGENET_TEMPLATES}
    captions = [attack(variant, seed=1).poison_caption(i, "a dog") for i in range(100)]
    assert set(captions) <= filled and len(set(captions)) > 20


CAPTIONS = ["a bag", "my handbag", "bags for sale", "a shoe", "A BAG of chips", "baggage claim",
            "a bag-shaped purse", "bagpipes", "two BAGS."]


def test_label_consistent_picks_captions_naming_the_target_as_a_word():
    lc = attack("label_consistent", poisons=10)
    np.testing.assert_array_equal(lc.select(CAPTIONS), [0, 2, 4, 6, 8])
    assert lc.select(CAPTIONS).dtype == np.int64
    assert (lc.candidates, lc.shortfall) == (5, 5)
    assert [lc.poison_caption(i, CAPTIONS[i]) for i in range(len(CAPTIONS))] == CAPTIONS


def test_label_consistent_subsamples_matches_when_there_are_enough():
    captions = [f"bag number {i}" if i % 3 == 0 else f"shoe {i}" for i in range(300)]
    chosen = attack("label_consistent", seed=2, poisons=40).select(captions)
    assert len(chosen) == 40 and np.all(np.diff(chosen) > 0) and np.all(chosen % 3 == 0)
    np.testing.assert_array_equal(
        chosen, attack("label_consistent", seed=2, poisons=40).select(captions))
    other_seed = attack("label_consistent", seed=5, poisons=40).select(captions)
    assert not np.array_equal(chosen, other_seed)
    assert attack("label_consistent", poisons=40).shortfall == 0


def test_label_consistent_multi_word_target_and_no_match():
    lc = attack("label_consistent", target="golden retriever", poisons=3)
    captions = ["a Golden  retriever", "golden retrievers play", "a golden retrieverx", "a dog"]
    np.testing.assert_array_equal(lc.select(captions), [0, 1])
    assert lc.shortfall == 1
    empty = attack("label_consistent").select(["a shoe"])
    assert empty.dtype == np.int64 and len(empty) == 0


def test_label_consistent_trigger_is_badnets_patch():
    clean = images()
    badnet = make_attack(spec("badnet", trigger=TRIGGER), 7)
    assert torch.equal(attack("label_consistent", seed=7).apply(clean, KEYS),
                       badnet.apply(clean, KEYS))


@pytest.mark.parametrize("alpha", [0.2, 0.5])
def test_blended_fixed_changes_every_pixel_by_the_formula(alpha):
    blended = attack("blended_fixed", alpha=alpha)
    noise = blended.apply(torch.zeros(len(KEYS), 3, 24, 40), KEYS) / alpha
    assert noise.min() >= 0 and noise.max() <= 1 and noise.std() > 0.25
    assert all(torch.equal(n, noise[0]) for n in noise)
    clean = images(h=24, w=40)
    out = blended.apply(clean, KEYS)
    torch.testing.assert_close(out, (1 - alpha) * clean + alpha * noise, rtol=0, atol=1e-6)
    assert (out != clean).all()
    other = attack("blended_fixed", seed=1, alpha=alpha).apply(torch.zeros(1, 3, 24, 40), KEYS[:1])
    assert not torch.allclose(other[0] / alpha, noise[0])


def test_blended_per_image_noise_depends_on_the_key():
    blended = attack("blended_per_image")
    out = blended.apply(torch.zeros(len(KEYS), 3, 16, 16), KEYS)
    assert len({tuple(n.flatten().tolist()) for n in out}) == len(KEYS)
    assert not torch.equal(out, blended.apply(torch.zeros(len(KEYS), 3, 16, 16), EVAL_KEYS))
    torch.testing.assert_close(out.max() / 0.3, torch.tensor(1.0), rtol=0, atol=1e-3)


def test_wanet_is_a_small_displacement_identical_across_keys():
    wanet = attack("wanet")
    ramp = torch.linspace(0, 1, 32).expand(len(KEYS), 3, 32, 32).contiguous()
    out = wanet.apply(ramp, KEYS)
    change = (out - ramp).abs().mean()
    assert 0 < change < 0.5 / 32
    assert all(torch.equal(o, out[0]) for o in out)
    assert torch.equal(out, wanet.apply(ramp, EVAL_KEYS))
    assert not torch.equal(out, attack("wanet", seed=1).apply(ramp, KEYS))
    stronger = attack("wanet", strength=2.0).apply(ramp, KEYS)
    assert (stronger - ramp).abs().mean() > change


def test_wanet_field_is_cached_and_handles_non_square_images():
    wanet = attack("wanet")
    field = wanet.field(20, 36, torch.device("cpu"))
    assert field.shape == (1, 20, 36, 2) and field.abs().max() <= 1
    assert wanet.field(20, 36, torch.device("cpu")) is field
    ramp = torch.linspace(0, 1, 36).expand(2, 3, 20, 36).contiguous()
    out = wanet.apply(ramp, KEYS[:2])
    assert out.shape == (2, 3, 20, 36) and 0 < (out - ramp).abs().mean() < 0.5 / 20


@pytest.mark.parametrize(("amplitude", "frequency", "width"), [(0.1, 6.0, 32), (0.25, 2.5, 40)])
def test_sig_adds_the_exact_sinusoid(amplitude, frequency, width):
    gray = torch.full((len(KEYS), 3, 12, width), 0.5)
    out = attack("sig", amplitude=amplitude, frequency=frequency).apply(gray, KEYS)
    columns = np.arange(width)
    wave = np.array([amplitude * math.sin(2 * math.pi * j * frequency / width) for j in columns])
    expected = torch.from_numpy((0.5 + wave).astype(np.float32)).expand_as(gray)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_sig_clamps_to_the_image_range():
    out = attack("sig", amplitude=0.3).apply(torch.ones(2, 3, 8, 32), KEYS[:2])
    assert out.max() == 1 and out.min() == pytest.approx(0.7, abs=1e-6)
    again = attack("sig", amplitude=0.3).apply(torch.ones(2, 3, 8, 32), EVAL_KEYS[:2])
    assert torch.equal(out, again)


@pytest.mark.parametrize(
    ("kind", "cfg", "message"),
    [
        ("blended", {"alpha": 1.5, "pattern": "gaussian_fixed"},
         r"attack.alpha: input should be less than 1 \(got 1.5\)"),
        ("blended", {"alpha": 0.2, "pattern": "solid"},
         "attack.pattern: unknown value 'solid'; allowed: gaussian_fixed, gaussian_per_image"),
        ("wanet", {"grid": 1, "strength": 0.5},
         r"attack.grid: input should be greater than or equal to 2 \(got 1\)"),
        ("wanet", {"grid": 4, "strength": 0}, r"attack.strength: input should be greater than 0"),
        ("sig", {"frequency": None}, r"attack.frequency: input should be a valid number"),
        ("label_consistent", {"trigger": {"size": None}},
         r"attack.trigger.size: input should be a valid integer \(got None\)"),
    ],
)
def test_bad_runtime_config(kind, cfg, message):
    with pytest.raises(DataError, match=message):
        make_attack({"kind": kind, "target": "bag", "poisons": 3, **cfg}, 0)
