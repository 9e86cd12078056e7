"""The detect node: downstream of a selected pre-trained model, it scores every training pair
with each detector that `[detect]` turns on and compares the scores with the poison manifest.

poison ──▶ pretrain ──▶ select ──▶ detect
   └────────────────────────────────▲  (the manifest is the ground truth)
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import create_model

from xspec.extend.registry import DETECTORS
from xspec.spec.base import NonNegativeInt, OmitAtDefault, PositiveInt, XspecModel


class Detectors(XspecModel):
    """One optional field per registered detector (its settings model); those that are off stay
    None, out of the id. Iterating gives (name, settings) of the ones that are on."""

    def on(self) -> dict[str, XspecModel]:
        return {name: value for name, value in self if value is not None}


class DetectConfig(XspecModel):
    detectors: Any
    batch_size: PositiveInt
    train: Any
    attack: Any
    seed: NonNegativeInt
    plugins: dict[str, str] = {}
    """Always in the id (detect ids were made with it)."""


def detect_config(attack, pairs) -> type[DetectConfig]:
    """The detect node's config for the registered detectors, attacks and pair sources."""
    detectors = create_model("Detectors", __base__=Detectors, **{
        d.name: (Annotated[d.spec | None, OmitAtDefault], None) for d in DETECTORS})
    return create_model("DetectConfig", __base__=DetectConfig, detectors=(detectors, ...),
                        attack=(attack, ...), train=(pairs, ...))


def detect_node(build, spec, chain, select):
    """The detect node of one pre-training chain; every detector's version is in its id."""
    chosen = spec.detect.detectors()
    shared = build.shared(spec)
    versions = {**shared.get("plugins", {}),
                **{f"detector:{n}": DETECTORS.get(n).version for n in chosen
                   if DETECTORS.get(n).version}}
    config = {"detectors": chosen,
              "batch_size": spec.detect.batch_size, "train": chain.pretrain.config.train,
              "attack": shared["attack"], "seed": shared["seed"],
              "plugins": dict(sorted(versions.items()))}
    return build.add("detect", config, (select, chain.poison))
