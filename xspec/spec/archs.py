"""Model architectures known without importing open_clip (and so torch): config file names."""

from __future__ import annotations

import difflib
import importlib.util
import json
from functools import cache
from importlib import resources
from pathlib import Path


@cache
def _config_files() -> dict[str, Path]:
    files = {}
    spec = importlib.util.find_spec("open_clip")
    for location in (spec.submodule_search_locations or []) if spec else []:
        files.update({p.stem: p for p in (Path(location) / "model_configs").glob("*.json")})
    ours = Path(str(resources.files("xspec.data") / "model_configs")).glob("*.json")
    files.update({p.stem: p for p in ours})
    return files


@cache
def known_archs() -> frozenset[str]:
    return frozenset(_config_files())


@cache
def image_size(arch: str) -> int | None:
    """The side of the square images `arch` takes, from its config file (None if unknown)."""
    path = _config_files().get(arch)
    if path is None:
        return None
    try:
        size = json.loads(path.read_text()).get("vision_cfg", {}).get("image_size")
    except (OSError, ValueError):
        return None
    size = size[0] if isinstance(size, (list, tuple)) else size
    return size if isinstance(size, int) else None


def check_arch(arch: str) -> str:
    archs = known_archs()
    if archs and arch not in archs:
        close = difflib.get_close_matches(arch, sorted(archs), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise ValueError(f"unknown architecture {arch!r}; {hint}")
    return arch
