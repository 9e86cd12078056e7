"""`[attack]`: one model per built-in attack, tagged by `kind`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from xspec.extend.registry import ATTACKS, register_attack
from xspec.spec.base import (
    Fraction, NotBool, OmitAtDefault, PositiveFloat, PositiveInt, XspecModel, tagged_union,
)


class Trigger(XspecModel):
    """BadNet's patch. `cleanclip` is the paper's trigger as its code made it (channel mean plus
    N(0, 1), wrapped modulo 256 by a byte cast: close to uniform noise); `gaussian_per_image` /
    `gaussian_fixed` paste N(0, 1) clamped to [0, 1], fresh per image or one fixed pattern;
    `solid` pastes `color`. docs/FIDELITY.md compares them."""

    size: PositiveInt = 16
    pattern: Literal["cleanclip", "gaussian_per_image", "gaussian_fixed", "solid"] = "cleanclip"
    location: Literal["random", "corner", "four_corners"] = "random"
    color: tuple[Fraction, Fraction, Fraction] = (1.0, 1.0, 0.0)


# How a poisoned (and a triggered evaluation) image reaches the model's size: centre-cropped like
# every clean image, or squashed to a square before the trigger, as the original code does
# (backdoor/utils.py:20; docs/FIDELITY.md). Square images are the same either way.
Resize = Literal["crop", "squash"]


class Targeted(XspecModel):
    """What every attack that poisons pairs towards a target caption declares. A subclass
    narrows `kind` to its name (a Literal); declared here, it stays first in dumps."""

    kind: str
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    resize: Annotated[Resize, OmitAtDefault] = "crop"


@register_attack("xspec.runtime.attacks.patch:BadNet")
class BadNet(Targeted):
    kind: Literal["badnet"]
    trigger: Trigger = Trigger()


@register_attack("xspec.runtime.attacks.patch:LabelConsistent")
class LabelConsistent(Targeted):
    """The patch goes on images whose caption already names the target; captions unchanged."""

    kind: Literal["label_consistent"]
    trigger: Trigger = Trigger()
    match: Annotated[Literal["word", "substring"], OmitAtDefault] = "word"
    """word: the target as whole words, any case, optional plural "s". substring: the original
    code's case-sensitive `target in caption` (backdoor/create_backdoor_data.py:53)."""


@register_attack("xspec.runtime.attacks.whole_image:Blended")
class Blended(Targeted):
    """(1 - alpha) * image + alpha * noise over the whole image."""

    kind: Literal["blended"]
    alpha: Annotated[float, Field(gt=0, lt=1), NotBool] = 0.2
    pattern: Literal["gaussian_fixed", "gaussian_per_image"] = "gaussian_fixed"


@register_attack("xspec.runtime.attacks.whole_image:WaNet")
class WaNet(Targeted):
    """One fixed, seeded warping field (Nguyen & Tran 2021), the same for every image."""

    kind: Literal["wanet"]
    grid: Annotated[int, Field(ge=2), NotBool] = 4
    strength: PositiveFloat = 0.5


@register_attack("xspec.runtime.attacks.whole_image:Sig")
class Sig(Targeted):
    """A horizontal sinusoidal signal added to the image (Barni et al. 2019)."""

    kind: Literal["sig"]
    amplitude: Annotated[float, Field(gt=0, le=1), NotBool] = 0.1
    frequency: PositiveFloat = 6.0
    blend: Annotated[Annotated[float, Field(gt=0, lt=1), NotBool] | None, OmitAtDefault] = None
    """None: the signal is added to the image (Barni et al.). A weight b: (1 - b) * image +
    b * signal, as the original code blends it (b = 0.2 with amplitude 60/255)."""


@register_attack("xspec.runtime.attacks.base:NoAttack")
class NoAttack(XspecModel):
    kind: Literal["none"]


Attack = tagged_union([a.spec for a in ATTACKS], "kind")
