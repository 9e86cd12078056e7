"""Model architectures known without importing open_clip (and so torch): config file names, or a
local open_clip model-config JSON file named by its path (ending in .json)."""

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


CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


def is_config_file(arch: str) -> bool:
    return arch.endswith(".json")


def read_config_file(path: str) -> tuple[dict, bytes]:
    """(config, raw bytes) of a model-config JSON; ValueError naming what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or 'cannot read'}") from None
    try:
        config = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise ValueError(f"{path}: not an open_clip model config; missing {', '.join(missing)}")
    return config, data


def image_size(arch: str) -> int | None:
    """The side of the square images `arch` takes, from its config file (None if unknown)."""
    path = Path(arch) if is_config_file(arch) else _config_files().get(arch)
    if path is None:
        return None
    try:
        size = json.loads(path.read_text()).get("vision_cfg", {}).get("image_size")
    except (OSError, ValueError):
        return None
    size = size[0] if isinstance(size, (list, tuple)) else size
    return size if isinstance(size, int) else None


def check_arch(arch: str) -> str:
    if is_config_file(arch):
        read_config_file(arch)
        return arch
    archs = known_archs()
    if archs and arch not in archs:
        close = difflib.get_close_matches(arch, sorted(archs), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise ValueError(f"unknown architecture {arch!r}; {hint}")
    return arch
