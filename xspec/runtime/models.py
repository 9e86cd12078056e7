"""open_clip models and tokenizers: xspec's tiny configs, any open_clip config, local weights only."""

from __future__ import annotations

import zipfile
from functools import cache
from importlib import resources
from pathlib import Path

import open_clip
from open_clip.modified_resnet import ModifiedResNet
import torch

from xspec.errors import DataError


@cache
def register_configs() -> None:
    """Make xspec's tiny CPU configs (xspec/data/model_configs) known to open_clip."""
    open_clip.add_model_config(Path(str(resources.files("xspec.data") / "model_configs")))


def create(arch: str, init: str | dict, device: torch.device) -> torch.nn.Module:
    register_configs()
    if arch not in open_clip.list_models():
        raise DataError(f"model.arch: unknown architecture {arch!r}; see `open_clip.list_models()`")
    if isinstance(init, dict) and _is_torchscript(init["path"]):
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=init["path"])
    else:
        model = open_clip.create_model(arch, pretrained=None)
        if isinstance(init, dict):
            model.load_state_dict(load_state_dict(init["path"]))
    if isinstance(model.visual, ModifiedResNet) and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # faster convolutions on GPU
    return model.to(device)


def tokenizer(arch: str):
    register_configs()
    return open_clip.get_tokenizer(arch)


def _is_torchscript(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from an xspec checkpoint, an open_clip training checkpoint or a bare state dict."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path}: no such file") from None
    except Exception as exc:  # torch raises UnpicklingError and friends
        raise DataError(
            f"checkpoint {path}: refused to load with weights_only=True ({type(exc).__name__}); "
            "only plain tensor checkpoints are accepted"
        ) from None
    state = loaded.get("model") or loaded.get("state_dict") or loaded
    return {k.removeprefix("module."): v for k, v in state.items()}


def image_stats(model) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std), int(size)
