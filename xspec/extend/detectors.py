"""Detectors of poisoned training pairs (`[detect.<name>]`): the entry and its decorator. The
registry itself, `DETECTORS`, is in `xspec.extend.registry` with the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xspec.extend.registry import DETECTORS, _origin


@dataclass(frozen=True)
class Detector:
    """`[detect.<name>]`: a detector of poisoned training pairs. `spec` is its table (an
    `XspecModel` of its settings, defaults the original's); `behaviour(spec, batch) -> scores`
    runs in the detect node on one batch of pairs (`xspec.runtime.detect.DetectBatch`) and
    returns one score per pair, higher meaning more likely poisoned."""

    name: str
    spec: type
    behaviour: Any
    version: str | None
    origin: str
    description: str = ""


def register_detector(name: str, behaviour: Any, *, version: str | None = None,
                      description: str = ""):
    """Class decorator on a detector's settings model: `[detect.<name>]` becomes that table;
    `behaviour` (a function or its "module:attr") scores a batch of pairs."""

    def decorate(model: type) -> type:
        DETECTORS.add(name, Detector(name, model, behaviour, version, _origin(model),
                                     description or (model.__doc__ or "").strip()))
        return model

    return decorate
