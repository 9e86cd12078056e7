"""Fused packing: one vmapped pass gives each member the loss and the step it takes alone."""

import pytest
import torch

from xspec.runtime import models
from xspec.runtime.fused import FusedPack, mmcl_of


def _members(k):
    torch.manual_seed(0)
    base = models.create("xspec-vit-micro", "scratch", torch.device("cpu"))
    out = []
    for i in range(k):  # other starts, as after a member's own steps
        m = models.create("xspec-vit-micro", "scratch", torch.device("cpu"))
        m.load_state_dict(base.state_dict())
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.01 * i)
        out.append(m.train())
    return out


def _batch(step):
    g = torch.Generator().manual_seed(step)
    return torch.rand(8, 3, 16, 16, generator=g), torch.randint(1, 400, (8, 16), generator=g)


def _optimisers(ms):
    """SGD: AdamW would turn the float noise of gradients that are zero in exact arithmetic
    (the attention key bias) into lr-sized steps of either sign, in both ways of computing."""
    return [torch.optim.SGD(m.parameters(), lr=0.1 * (i + 1), momentum=0.9, weight_decay=0.1 * i)
            for i, m in enumerate(ms)]


def test_fused_steps_equal_sequential_steps_within_float_tolerance():
    seq, fused = _members(3), _members(3)
    seq_opt, fused_opt = _optimisers(seq), _optimisers(fused)
    pack = FusedPack(fused)
    for step in range(2):
        images, texts = _batch(step)
        losses = []
        for m, opt in zip(seq, seq_opt):
            opt.zero_grad()
            loss = mmcl_of(m(images, texts))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        for opt in fused_opt:
            opt.zero_grad()
        fused_losses = pack.backward(images, texts)
        for a, b in zip(seq, fused):
            for (name, p), q in zip(a.named_parameters(), b.parameters()):
                assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5), (name, (p.grad - q.grad).abs().max(), p.grad.abs().max())
        for opt in fused_opt:
            opt.step()
        assert fused_losses.shape == (3,)
        assert torch.allclose(fused_losses, torch.tensor(losses), rtol=1e-5, atol=1e-6)
        assert len(set(losses)) == 3  # the members do differ
    for a, b in zip(seq, fused):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name


def test_members_of_other_architectures_refused():
    small = models.create("xspec-vit-micro", "scratch", torch.device("cpu"))
    other = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="one architecture"):
        FusedPack([small, other])
