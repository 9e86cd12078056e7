"""A cleaning defence's step and epoch hooks (`Pieces.before_step`, `after_step`,
`on_epoch_end`) fire once per optimiser step and once per epoch, in order, with the numbers
docs/EXTENDING.md promises, and an `after_step` hook can keep pruned units at zero."""

from types import SimpleNamespace

import torch
from tiny_model import Batches, Tiny  # conftest puts tests/ on sys.path

from xspec.extend import Pieces, register_defence
from xspec.runtime.defences import defences
from xspec.runtime.loop import train
from xspec.runtime.train import TrainState
from xspec.spec.tables.training import Training

STEPS, EPOCHS = 3, 2


def _probe(events: list, seen: dict):
    """A defence that records every hook call and zeroes unit 0 of the image layer after each
    optimiser step, as fine-pruning does."""

    def build(value, setup):
        seen.update(value=value, model=setup.model, optimizer=setup.optimizer, data=setup.data)
        weight = setup.model.image.weight

        def before(step):
            events.append(("before_step", step, weight.detach().clone()))

        def after(steps):
            events.append(("after_step", steps, weight.detach().clone()))
            with torch.no_grad():
                weight[0].zero_()

        return Pieces(before_step=before, after_step=after,
                      on_epoch_end=lambda epoch: events.append(("on_epoch_end", epoch, None)))

    return build


def _run(events: list, seen: dict, **config):
    torch.manual_seed(0)
    model, data = Tiny(), Batches(STEPS)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    build = defences(SimpleNamespace(cfg=SimpleNamespace(seed=0, **config),
                                     device=torch.device("cpu"), log=lambda message: None))
    hooks = build(model, data, optimizer) if build is not None else None
    cfg = Training(objective="mmcl", epochs=EPOCHS, lr=0.5, warmup_steps=0)
    train(cfg, model, data, optimizer, TrainState(),
          lambda state, losses: events.append(("evaluated", state.epoch, None)),
          torch.device("cpu"), hooks=hooks)
    return model, data, optimizer


def test_step_and_epoch_hooks_fire_per_step_and_per_epoch(registries):
    events, seen = [], {}
    register_defence("hook_probe", _probe(events, seen), annotation=float, default=0.0)
    model, data, optimizer = _run(events, seen, hook_probe=0.25)

    assert seen == {"value": 0.25, "model": model, "optimizer": optimizer, "data": data}
    expected = []
    for epoch in range(1, EPOCHS + 1):
        for step in range((epoch - 1) * STEPS, epoch * STEPS):
            expected += [("before_step", step), ("after_step", step + 1)]
        expected += [("on_epoch_end", epoch), ("evaluated", epoch)]
    assert [(name, number) for name, number, _ in events] == expected
    # after_step runs after optimizer.step(): it sees the weights this step changed
    steps = [e for e in events if e[0] != "on_epoch_end" and e[0] != "evaluated"]
    for before, after in zip(steps[::2], steps[1::2]):
        assert not torch.equal(before[2][1:], after[2][1:])
    # ... so what it zeroes is zero when every later step starts, and in the final model
    assert all(torch.equal(w[0], torch.zeros(4))
               for name, n, w in steps if name == "before_step" and n >= 1)
    assert all(w[0].abs().sum() > 0 for name, n, w in steps if name == "after_step")
    assert torch.equal(model.image.weight[0], torch.zeros(4))
    assert model.image.weight[1:].abs().sum() > 0


def test_hooks_of_a_defence_that_is_off_never_fire(registries):
    events, seen = [], {}
    register_defence("hook_probe", _probe(events, seen), annotation=float, default=0.0)
    model, _, _ = _run(events, seen)  # the clean node's config has no hook_probe: it is off
    assert seen == {}
    assert [name for name, _, _ in events] == ["evaluated"] * EPOCHS
    assert model.image.weight[0].abs().sum() > 0
