"""open_clip models and tokenizers: xspec's tiny configs, any open_clip config, local weights only."""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import open_clip
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import QuickGELU
import torch

from xspec.errors import DataError
from xspec.spec.archs import is_config_file, read_config_file


@cache
def register_configs() -> None:
    """Make xspec's tiny CPU configs (xspec/data/model_configs) known to open_clip."""
    open_clip.add_model_config(Path(str(resources.files("xspec.data") / "model_configs")))


def resolve(arch: str, sha256: str | None = None) -> str:
    """open_clip's name for `arch`: a config name as it is; a model-config JSON file registered
    under a name from its content (so two files with one stem never collide). `sha256`, the
    file's digest when the study was planned, must still match."""
    register_configs()
    if not is_config_file(arch):
        return arch
    try:
        _, data = read_config_file(arch)
    except ValueError as exc:
        raise DataError(f"model.arch: {exc}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"model.arch: {arch} changed since the study was planned; plan and "
                        "run it again (the new content gets new node ids)")
    name = f"xspec-custom-{hashlib.sha256(data).hexdigest()[:12]}"
    if name not in open_clip.list_models():
        folder = Path(tempfile.gettempdir()) / f"xspec-model-configs-{os.getuid()}"
        folder.mkdir(exist_ok=True)
        copy = folder / f"{name}.json"
        copy.write_bytes(data)
        open_clip.add_model_config(copy)
    return name


def create(arch: str, init: str | dict, device: torch.device,
           log: Callable[[str], None] = print) -> torch.nn.Module:
    """A model of `arch`, from scratch or from the weights of a local file. A file whose
    activation is known (OpenAI's TorchScript files: QuickGELU; xspec's checkpoints say theirs)
    must match the architecture's; for other files a mismatch can only be warned about."""
    arch = resolve(arch)
    if arch not in open_clip.list_models():
        raise DataError(f"model.arch: unknown architecture {arch!r}; see `open_clip.list_models()`")
    if isinstance(init, dict) and _is_torchscript(init["path"]):
        _check_activation(arch, QUICK_GELU, f"{init['path']} is an OpenAI TorchScript checkpoint")
        model = open_clip.create_model(arch, pretrained=None)
        model.load_state_dict(_torchscript_state(init["path"]))
    else:
        model = open_clip.create_model(arch, pretrained=None)
        if isinstance(init, dict):
            loaded = _load(init["path"])
            if isinstance(loaded.get("activation"), str):
                _check_activation(arch, loaded["activation"], f"{init['path']} was trained with it")
            elif arch_activation(arch) == GELU and f"{arch}-quickgelu" in open_clip.list_models():
                log(f"warning: model.init {init['path']} does not say which activation it was "
                    f"trained with; {arch!r} uses nn.GELU, but OpenAI's and CleanCLIP's {arch} "
                    f"weights use QuickGELU: for those, name model.arch '{arch}-quickgelu'")
            model.load_state_dict(_state(loaded))
    if isinstance(model.visual, ModifiedResNet) and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # faster convolutions on GPU
    return model.to(device)


def tokenizer(arch: str):
    return open_clip.get_tokenizer(resolve(arch))


# Entries of OpenAI's TorchScript files that are not weights of an open_clip model.
TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def _torchscript_state(path: str) -> dict[str, torch.Tensor]:
    """The weights of an OpenAI TorchScript file (`torch.load` refuses TorchScript with
    weights_only=True; `torch.jit.load` reads it without unpickling Python objects)."""
    state = torch.jit.load(path, map_location="cpu").state_dict()
    return {k: v for k, v in state.items() if k not in TORCHSCRIPT_EXTRAS}


def _is_torchscript(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


QUICK_GELU, GELU = "quick_gelu", "gelu"


def arch_activation(arch: str) -> str:
    """The text tower's activation (ModifiedResNets use ReLU in the image tower either way)."""
    return QUICK_GELU if (open_clip.get_model_config(resolve(arch)) or {}).get("quick_gelu") else GELU


def activation(model: torch.nn.Module) -> str:
    """The activation a built model uses, recorded in xspec's checkpoints."""
    return QUICK_GELU if any(isinstance(m, QuickGELU) for m in model.modules()) else GELU


def _check_activation(arch: str, found: str, why: str) -> None:
    expected = arch_activation(arch)
    if found == expected:
        return
    names = {QUICK_GELU: "QuickGELU", GELU: "nn.GELU"}
    twin = f"{arch}-quickgelu" if found == QUICK_GELU else arch.removesuffix("-quickgelu")
    hint = f"; name model.arch {twin!r}" if twin in open_clip.list_models() else ""
    raise DataError(f"model.arch {arch!r} uses {names[expected]}, but the weights use "
                    f"{names.get(found, found)} ({why}){hint}")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from an xspec checkpoint, an open_clip training checkpoint or a bare state dict."""
    return _state(_load(path))


def _state(loaded: dict) -> dict[str, torch.Tensor]:
    state = loaded.get("model") or loaded.get("state_dict") or loaded
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load(path: str | Path) -> dict:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path}: no such file") from None
    except Exception as exc:  # torch raises UnpicklingError and friends
        from xspec.runtime.records import damaged

        if damaged(Path(path), exc):
            raise DataError(f"{damaged(Path(path), exc)}; write or copy it again") from None
        raise DataError(
            f"checkpoint {path}: refused to load with weights_only=True ({type(exc).__name__}); "
            "only plain tensor checkpoints are accepted"
        ) from None
    return loaded


def image_stats(model) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std), int(size)
