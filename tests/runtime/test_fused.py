"""Fused packing: one vmapped pass gives each member the loss and the step it takes alone."""

import pytest
import torch

from xspec.runtime import models
from dataclasses import dataclass, field

from xspec.runtime.distributed import Dist
from xspec.runtime.fused import FusedPack, FusedStep, FuseError, mmcl_of
from xspec.runtime.train import TrainState, train_step
from xspec.spec.tables.training import Training


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
        fused_losses, _ = pack.backward(images, texts)
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
    with pytest.raises(FuseError, match="another architecture.*run.fuse = false"):
        FusedPack([small, other])
    wider = models.create("xspec-vit-micro", "scratch", torch.device("cpu"))
    wider.text_projection = torch.nn.Parameter(torch.zeros(wider.text_projection.shape[0], 3))
    with pytest.raises(FuseError, match=r"text_projection \[\d+, 3\] vs text_projection"):
        FusedPack([small, wider])


@dataclass(eq=False)
class _Trainee:  # what the epoch loop's step reads and writes (xspec.runtime.loop.Trainee)
    cfg: Training
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState = field(default_factory=TrainState)
    hooks: object = None
    progress: object = None
    terms: tuple = ()
    sums: dict = field(default_factory=dict)
    error: Exception | None = None

    def add(self, losses):
        for name, value in losses.items():
            self.sums.setdefault(name, []).append(float(value))

    def fail(self, exc):
        self.error = exc


def _trainees(ms):
    from xspec.runtime.optim import adamw

    cfgs = [Training(objective="mmcl+ssl", ssl_weight=w, epochs=2, lr=lr, warmup_steps=1,
                     precision="fp32") for lr, w in ((1e-3, 1.0), (3e-3, 0.5), (2e-3, 0.25))]
    return [_Trainee(c, m, adamw(m, c.lr, 0.1)) for c, m in zip(cfgs, ms)]


def _views(step):
    g = torch.Generator().manual_seed(100 + step)
    return {"index": torch.arange(8), "image": torch.rand(8, 3, 16, 16, generator=g),
            "image_aug": torch.rand(8, 3, 16, 16, generator=g),
            "text": torch.randint(1, 400, (8, 16), generator=g),
            "text_aug": torch.randint(1, 400, (8, 16), generator=g)}


def test_the_fused_step_takes_each_members_own_train_step():
    """Per-member learning rate (warm-up schedule), loss weights and AdamW: the fused step's
    losses, their parts and the parameters after three steps equal `train_step`'s. Not the
    attention key biases: their gradient is zero in exact arithmetic (softmax ignores a shift),
    so AdamW turns either computation's float noise into lr-sized steps of either sign; they do
    not change any output. The same noise on near-zero gradients (token embeddings of the
    padding after the end token) moves other parameters by a fraction of one step (lr 3e-3), so
    parameters are compared to 1e-3 and the losses, what the metrics are made of, to 1e-4."""
    seq, fused = _trainees(_members(3)), _trainees(_members(3))
    step = FusedStep()
    for k in range(3):
        batch = _views(k)
        for t in seq:
            t.add(train_step(t.cfg, t.model, t.model, t.optimizer, batch, t.state, 6,
                             torch.device("cpu")))
        assert step(fused, batch, 3, torch.device("cpu"), Dist()) == fused
    for a, b in zip(seq, fused):
        assert a.state.step == b.state.step == 3
        assert a.sums.keys() == b.sums.keys() == {"loss", "mmcl", "ssl"}
        for name in a.sums:
            assert a.sums[name] == pytest.approx(b.sums[name], rel=1e-4), name
        for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
            if name.endswith("in_proj_bias"):
                keys = torch.arange(len(p)) // (len(p) // 3) == 1
                p, q = p[~keys], q[~keys]
            assert torch.allclose(p, q, rtol=1e-3, atol=1e-3), (name, (p - q).abs().max())
    assert len({round(t.sums["loss"][-1], 4) for t in fused}) == 3


def test_a_fused_member_with_a_nan_loss_fails_alone():
    fused = _trainees(_members(3))
    with torch.no_grad():
        fused[1].model.logit_scale.fill_(float("nan"))
    alive = FusedStep()(fused, _views(0), 3, torch.device("cpu"), Dist())
    assert alive == [fused[0], fused[2]]
    assert "loss is nan" in str(fused[1].error) and fused[1].state.step == 0


def test_what_one_vmapped_pass_cannot_compute_is_refused_naming_run_fuse():
    ts = _trainees(_members(2))
    ts[1].hooks = type("Hooks", (), {"transform": lambda self, b: b})()
    with pytest.raises(FuseError, match="member 1 has a defence.*run.fuse = false"):
        FusedStep()(ts, _views(0), 3, torch.device("cpu"), Dist())
    ts = _trainees(_members(2))
    with pytest.raises(FuseError, match="several ranks"):
        FusedStep()(ts, _views(0), 3, torch.device("cpu"), Dist(rank=0, world=2))


def test_batch_norm_running_statistics_update_as_in_sequential_steps():
    """ResNet towers (RN50) hold BatchNorm buffers: the vmapped pass updates stacked copies,
    which must reach each member, or its evaluation would use the starting statistics."""

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)).mean((2, 3))

    torch.manual_seed(0)
    fused = [Tower() for _ in range(3)]
    seq = [Tower() for _ in range(3)]
    for a, b in zip(seq, fused):
        a.load_state_dict(b.state_dict())
    x = torch.randn(5, 3, 8, 8)
    FusedPack(fused, loss_of=lambda out: out.pow(2).mean()).backward(x)
    for a, b in zip(seq, fused):
        a(x).pow(2).mean().backward()
        assert int(b.bn.num_batches_tracked) == 1
        assert torch.allclose(a.bn.running_mean, b.bn.running_mean, atol=1e-7)
        assert torch.allclose(a.bn.running_var, b.bn.running_var, atol=1e-6)
        assert torch.allclose(a.conv.weight.grad, b.conv.weight.grad, atol=1e-6)
