"""Cleaning defences compose: every active one adds its terms and hooks, each owns its
parameter groups, and a defence that is off is absent from the config and from the run."""

from types import SimpleNamespace

import pytest
import torch

from xspec.extend import Pieces, Term, register_defence
from xspec.extend.registry import DEFENCES
from xspec.runtime.defences import DefenceConflict, active, defences, replace_group


def _ctx(config):
    return SimpleNamespace(cfg=SimpleNamespace(seed=0, **config), device=torch.device("cpu"),
                           log=lambda message: None)  # `cfg`: the node's typed config


def test_two_defences_add_their_terms_hooks_and_groups(registries):
    calls = []

    def owner(name):
        def build(value, setup):
            head = torch.nn.Linear(2, 2)

            def hook(epoch):
                calls.append((name, epoch))
                setup.param_group(name, head.parameters(), weight_decay=0.0)

            return Pieces(terms=[Term(name, value, lambda m, b, f: torch.tensor(1.0))],
                          on_epoch_start=hook)
        return build

    register_defence("first_x", owner("first_x"), annotation=float, default=0.0)
    register_defence("second_x", owner("second_x"), annotation=float, default=0.0)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW([{"params": [model.weight]}, {"params": [model.bias]}])
    build = defences(_ctx({"first_x": 0.5, "second_x": 2.0}))
    composed = build(model, None, optimizer)
    terms, on_epoch_start = composed.terms, composed.on_epoch_start
    assert [(t.name, t.weight) for t in terms] == [("first_x", 0.5), ("second_x", 2.0)]
    on_epoch_start(1)
    on_epoch_start(2)
    assert calls == [("first_x", 1), ("second_x", 1), ("first_x", 2), ("second_x", 2)]
    owners = [g.get("owner") for g in optimizer.param_groups]
    assert owners == [None, None, "first_x", "second_x"]


def test_replacing_a_group_drops_its_optimizer_state_only():
    model, a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    replace_group(optimizer, "a", list(a.parameters()))
    replace_group(optimizer, "b", list(b.parameters()))
    (model(torch.ones(1, 2)) + a(torch.ones(1, 2)) + b(torch.ones(1, 2))).sum().backward()
    optimizer.step()
    fresh = torch.nn.Linear(2, 1)
    replace_group(optimizer, "a", list(fresh.parameters()))
    assert all(p not in optimizer.state for p in a.parameters())
    assert all(p in optimizer.state for p in b.parameters())
    assert [g.get("owner") for g in optimizer.param_groups] == [None, "b", "a"]


def test_defences_that_are_off_build_nothing():
    assert defences(_ctx({"lr": 1e-5})) is None
    names = [d.name for d, _ in active({"l2_weight": 0.1, "deep_cluster": {"k": 3, "weight": 1.0,
                                        "labels": "kmeans", "iterations": 2}})]
    assert names == [d.name for d in DEFENCES if d.name in ("l2_weight", "deep_cluster")]


def test_two_defences_replacing_the_objective_are_refused(registries):
    def replacing(value, setup):
        return Pieces(loss=lambda model, net, batch: (None, {}, {}))

    register_defence("first_y", replacing, annotation=float, default=0.0)
    register_defence("second_y", replacing, annotation=float, default=0.0)
    model = torch.nn.Linear(2, 2)
    build = defences(_ctx({"first_y": 1.0, "second_y": 1.0}))
    with pytest.raises(DefenceConflict, match="clean.first_y and clean.second_y both replace "
                                              "the cleaning loss"):
        build(model, None, torch.optim.AdamW(model.parameters()))
