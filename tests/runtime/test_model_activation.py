"""Weights trained with QuickGELU never load silently into an nn.GELU architecture."""

import json

import open_clip
import pytest
import torch

from xspec.errors import DataError
from xspec.runtime import models

CPU = torch.device("cpu")
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1}}


@pytest.fixture(scope="module")
def archs(tmp_path_factory):
    """A GELU ResNet config and its QuickGELU twin, named as open_clip names such pairs."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "xspec-test-rn.json").write_text(json.dumps(TINY))
    (folder / "xspec-test-rn-quickgelu.json").write_text(json.dumps({**TINY, "quick_gelu": True}))
    open_clip.add_model_config(folder)
    return "xspec-test-rn", "xspec-test-rn-quickgelu"


def test_architectures_know_their_activation(archs):
    assert models.arch_activation("RN50") == models.GELU
    assert models.arch_activation("RN50-quickgelu") == models.QUICK_GELU
    assert models.arch_activation("xspec-rn-tiny") == models.QUICK_GELU
    gelu, quick = archs
    assert models.activation(models.create(quick, "scratch", CPU)) == models.QUICK_GELU
    assert models.activation(models.create(gelu, "scratch", CPU)) == models.GELU


def test_openai_torchscript_weights_need_a_quickgelu_arch(tmp_path):
    path = tmp_path / "RN50.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))  # any TorchScript archive
    with pytest.raises(DataError) as error:
        models.create("RN50", {"path": str(path)}, CPU)
    assert str(error.value) == (
        f"model.arch 'RN50' uses nn.GELU, but the weights use QuickGELU ({path} is an OpenAI "
        "TorchScript checkpoint); name model.arch 'RN50-quickgelu'")


def test_an_xspec_checkpoint_names_its_activation(archs, tmp_path):
    gelu, quick = archs
    trained = models.create(quick, "scratch", CPU)
    path = tmp_path / "epoch_1.pt"
    torch.save({"model": trained.state_dict(), "activation": models.activation(trained)}, path)
    with pytest.raises(DataError, match=rf"model.arch '{gelu}' uses nn.GELU, but the weights "
                                        rf"use QuickGELU .*; name model.arch '{quick}'"):
        models.create(gelu, {"path": str(path)}, CPU)
    loaded = models.create(quick, {"path": str(path)}, CPU)
    assert torch.equal(loaded.visual.conv1.weight, trained.visual.conv1.weight)


def test_a_bare_state_dict_into_a_gelu_arch_with_a_quickgelu_twin_is_warned_about(archs,
                                                                                 tmp_path):
    gelu, quick = archs
    path = tmp_path / "weights.pt"
    torch.save(models.create(gelu, "scratch", CPU).state_dict(), path)
    said = []
    models.create(gelu, {"path": str(path)}, CPU, log=said.append)
    assert said == [f"warning: model.init {path} does not say which activation it was trained "
                    f"with; '{gelu}' uses nn.GELU, but OpenAI's and CleanCLIP's {gelu} weights "
                    f"use QuickGELU: for those, name model.arch '{quick}'"]
    said.clear()
    models.create(quick, {"path": str(path)}, CPU, log=said.append)
    assert said == []


def test_openai_torchscript_weights_load_into_the_quickgelu_arch(tmp_path):
    """A TorchScript archive of a QuickGELU CLIP (as OpenAI ships RN50) loads its weights."""
    torch.manual_seed(0)
    source = models.create("xspec-rn-tiny", "scratch", CPU).eval()
    path = tmp_path / "openai.pt"
    traced = torch.jit.trace(source, (torch.rand(2, 3, 32, 32), torch.randint(0, 99, (2, 16))),
                             strict=False)
    traced.save(str(path))
    torch.manual_seed(1)
    loaded = models.create("xspec-rn-tiny", {"path": str(path)}, CPU)
    for name, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
