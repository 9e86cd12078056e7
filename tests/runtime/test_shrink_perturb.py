"""Shrink-and-perturb on a ResNet CLIP: parameters only, BatchNorm statistics untouched."""

import pytest
import torch

from xspec.runtime import models
from xspec.runtime.ablations import perturbed

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = models.create("xspec-rn-tiny", "scratch", CPU)
    model.train()
    with torch.no_grad():  # a few batches give the BatchNorm layers non-trivial statistics
        for _ in range(3):
            model.encode_image(torch.rand(8, 3, 32, 32))
    model.eval()
    return model


def parts(model):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, {name for name, _ in model.named_parameters()}


def test_buffers_are_kept_and_outputs_stay_finite(resnet):
    start, parameters = parts(resnet)
    buffers = set(start) - parameters
    assert any(name.endswith("running_var") for name in buffers)
    out = perturbed(start, parameters, 0.5, 1.0, "gaussian", None, seed=0)
    for name in buffers:
        assert torch.equal(out[name], start[name]), name
    for name in parameters:
        assert not torch.equal(out[name], start[name]), name
    resnet.load_state_dict(out)
    features = resnet.encode_image(torch.rand(4, 3, 32, 32))
    assert torch.isfinite(features).all()
    resnet.load_state_dict(start)


def test_perturbing_every_float_tensor_breaks_batchnorm(resnet):
    """What the defect did: running variances shrunk and perturbed go negative."""
    start, _ = parts(resnet)
    every = {name for name, value in start.items() if value.is_floating_point()}
    out = perturbed(start, every, 0.5, 1.0, "gaussian", None, seed=0)
    assert any((out[n] < 0).any() for n in every if n.endswith("running_var"))


def test_init_noise_is_a_fresh_initialisation(resnet):
    start, parameters = parts(resnet)
    torch.manual_seed(1)
    fresh = models.create("xspec-rn-tiny", "scratch", CPU).state_dict()
    out = perturbed(start, parameters, 0.9, 0.1, "init", fresh, seed=0)
    for name in parameters:
        assert torch.equal(out[name], 0.9 * start[name] + 0.1 * fresh[name]), name


def test_gaussian_noise_is_seeded(resnet):
    start, parameters = parts(resnet)
    first = perturbed(start, parameters, 0.9, 0.01, "gaussian", None, seed=3)
    again = perturbed(start, parameters, 0.9, 0.01, "gaussian", None, seed=3)
    other = perturbed(start, parameters, 0.9, 0.01, "gaussian", None, seed=4)
    name = "visual.conv1.weight"
    assert torch.equal(first[name], again[name]) and not torch.equal(first[name], other[name])
