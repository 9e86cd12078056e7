"""Building attacks from their config, and the behaviour most attacks share.

An attack object has `target`, `select(captions) -> sorted int64 indices`,
`poison_caption(index, caption) -> str` and `apply(images, keys) -> Tensor`. `apply` takes float
images [B, 3, H, W] in [0, 1] and int64 sample keys [B]; it never modifies its input and gives the
same trigger for the same key in every epoch, process and worker. `shortfall` is how many of the
requested poisons `select` could not place (only label-consistent attacks can fall short).

Its class is built with `(spec, seed)`: `spec` is the attack's table, validated by the model its
kind registered (`xspec.extend.register_attack`), so no attack re-checks its fields by hand.
Nothing here imports torch at module level: a plugin's attack can subclass `TemplatedAttack`
and still be imported by the compiler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from xspec.errors import DataError
from xspec.extend.registry import ATTACKS as REGISTERED
from xspec.extend.registry import resolve
from xspec.runtime.seeding import derive_seed

if TYPE_CHECKING:
    from torch import Tensor

def attack_spec(cfg: dict[str, Any]) -> Any:
    """The attack's table as its registered model, from a node config (extra keys ignored: a
    poison node's config also holds the training set and seed)."""
    from xspec.spec.schema import spec_model

    spec_model()  # built-ins registered
    kind = cfg.get("kind")
    if kind not in REGISTERED:
        raise DataError(f"attack.kind: unknown value {kind!r}; allowed: "
                        f"{', '.join(REGISTERED.names())}")
    model = REGISTERED.get(kind).spec
    try:
        return model.model_validate({k: v for k, v in cfg.items() if k in model.model_fields})
    except ValidationError as exc:
        from xspec.spec.wording import describe

        error = exc.errors()[0]
        where = ".".join(str(p) for p in ("attack", *error["loc"]))
        raise DataError(f"{where}: {describe(error)}") from None


def make_attack(cfg: dict[str, Any] | Any, seed: int) -> Any:
    spec = attack_spec(cfg) if isinstance(cfg, dict) else cfg
    return resolve(REGISTERED.get(spec.kind).behaviour)(spec, seed)


def rng(seed: int, *parts: int | str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *parts))


class NoAttack:
    target: str | None = None
    shortfall = 0
    resize = "crop"

    def __init__(self, cfg: Any, seed: int):
        self.seed = seed

    def select(self, captions: Sequence[str]) -> np.ndarray:
        return np.empty(0, dtype=np.int64)

    def poison_caption(self, index: int, caption: str) -> str:
        return caption

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        return images


class TemplatedAttack:
    """Poisons a seeded uniform subset of `poisons` pairs; their captions become one of the 80 CLIP
    templates filled with the target. Subclasses supply `apply`.

    Every kind draws its subset from (seed, "select"), so attacks that share a seed poison the same
    pairs and differ only in their trigger."""

    shortfall = 0

    def __init__(self, cfg: Any, seed: int):
        self.seed = seed
        self.target: str | None = cfg.target
        self.poisons: int = cfg.poisons
        # How a poisoned image reaches the model's size ("crop" or "squash", `attack.resize`);
        # the data pipeline reads it.
        self.resize: str = getattr(cfg, "resize", "crop")

    def select(self, captions: Sequence[str]) -> np.ndarray:
        if self.poisons > len(captions):
            raise DataError(
                f"attack.poisons: {self.poisons} poisons requested but the dataset has "
                f"only {len(captions)} samples"
            )
        chosen = rng(self.seed, "select").choice(len(captions), size=self.poisons, replace=False)
        return np.sort(chosen).astype(np.int64)

    def poison_caption(self, index: int, caption: str) -> str:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        which = int(rng(self.seed, "caption", index).integers(len(OPENAI_IMAGENET_TEMPLATES)))
        return OPENAI_IMAGENET_TEMPLATES[which](self.target)
