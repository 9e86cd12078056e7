"""`run.grad_checkpointing` and `run.compile` change how a model trains, not its losses."""

import pytest
import torch

from xspec.runtime import models
from xspec.runtime.objectives import total_loss
from xspec.runtime.optim import adamw
from xspec.runtime.speed import apply_run_options
from xspec.runtime.train import encode
from xspec.spec.tables.settings import RunSettings

STEPS = 3


def _batches():
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(8, 3, 16, 16, generator=g),
             "text": torch.randint(1, 400, (8, 16), generator=g)} for _ in range(STEPS)]


def _losses(settings: dict, arch: str = "xspec-vit-micro") -> list[float]:
    torch.manual_seed(0)
    logs = []
    model = apply_run_options(models.create(arch, "scratch", torch.device("cpu")),
                              RunSettings(**settings),
                              logs.append)
    assert len(logs) == sum(bool(v) for v in settings.values())  # each option says it is on
    model.train()
    optimizer = adamw(model, 1e-3, 0.1)
    out = []
    for batch in _batches():
        features = encode(model, batch, torch.device("cpu"))
        loss, _ = total_loss("mmcl", {"mmcl": 1.0}, features, model.logit_scale.exp())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


def test_grad_checkpointing_gives_the_same_losses():
    plain = _losses({})
    checkpointed = _losses({"grad_checkpointing": True})
    assert checkpointed == pytest.approx(plain, rel=1e-5, abs=1e-6)
    assert len(set(plain)) == STEPS  # the model trains: the losses move


def test_grad_checkpointing_is_really_on():
    model = apply_run_options(models.create("xspec-vit-micro", "scratch", torch.device("cpu")),
                              RunSettings(grad_checkpointing=True), lambda _: None)
    assert model.visual.transformer.grad_checkpointing
    assert model.transformer.grad_checkpointing


@pytest.mark.slow
def test_compile_gives_the_same_losses():
    plain = _losses({})
    compiled = _losses({"compile": True})
    assert compiled == pytest.approx(plain, rel=1e-4, abs=1e-5)
