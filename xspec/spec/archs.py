"""Model architectures known without importing open_clip (and so torch): config file names."""

from __future__ import annotations

import difflib
import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path


@cache
def known_archs() -> frozenset[str]:
    names = {p.stem for p in Path(str(resources.files("xspec.data") / "model_configs")).glob("*.json")}
    spec = importlib.util.find_spec("open_clip")
    for location in (spec.submodule_search_locations or []) if spec else []:
        names |= {p.stem for p in (Path(location) / "model_configs").glob("*.json")}
    return frozenset(names)


def check_arch(arch: str) -> str:
    archs = known_archs()
    if archs and arch not in archs:
        close = difflib.get_close_matches(arch, sorted(archs), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise ValueError(f"unknown architecture {arch!r}; {hint}")
    return arch
