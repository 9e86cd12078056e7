"""The detect node: downstream of a selected pre-trained model, it scores every training pair
with each detector that `[detect]` turns on and compares the scores with the poison manifest.

poison ──▶ pretrain ──▶ select ──▶ detect
   └────────────────────────────────▲  (the manifest is the ground truth)
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from xspec.extend.registry import DETECTORS
from xspec.spec.base import NonNegativeInt, PositiveInt, XspecModel


class DetectConfig(XspecModel):
    detectors: dict[str, dict[str, Any]]
    """{name: its settings} of the detectors that are on; typed by the stage with each
    detector's own model."""
    batch_size: PositiveInt
    train: dict[str, Any]
    attack: dict[str, Any]
    seed: NonNegativeInt
    plugins: dict[str, str] = {}

    @field_validator("detectors")
    @classmethod
    def _registered(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(DETECTORS.names()))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a registered detector")
        return value


def detect_node(build, spec, chain, select):
    """The detect node of one pre-training chain; every detector's version is in its id."""
    chosen = spec.detect.detectors()
    shared = build.shared(spec)
    versions = {**shared.get("plugins", {}),
                **{f"detector:{n}": DETECTORS.get(n).version for n in chosen
                   if DETECTORS.get(n).version}}
    config = {"detectors": {n: v.model_dump(mode="json") for n, v in sorted(chosen.items())},
              "batch_size": spec.detect.batch_size, "train": chain.pretrain.config["train"],
              "attack": shared["attack"], "seed": shared["seed"],
              "plugins": dict(sorted(versions.items()))}
    return build.add("detect", config, (select, chain.poison))
