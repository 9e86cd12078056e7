"""A defence's `setup.config` is its node's typed config (issue 18): the built-in defences read
attributes (`setup.config.lr`), as a plugin author would, and a plugin written when it was
node.json's dict still reads its keys."""

import types

import pytest
import torch

from xspec.builtin.roclip import RoClip
from xspec.builtin.roclip import build as build_roclip
from xspec.builtin.safeclip import SafeClip, phase_lr
from xspec.builtin.safeclip import build as build_safeclip
from xspec.compiler.plan import compile_spec
from xspec.extend import Pieces, register_defence
from xspec.runtime.defences import defences
from xspec.runtime.node import Context
from xspec.spec.load import load_spec
from xspec.spec.tables.settings import RunSettings
from xspec.spec.tables.training import Training
from xspec.store.workspace import Workspace, node_record


def _setup_of_clean_node(write_spec, base_spec, tmp_path, behaviour):
    """Build the defences of the first clean node of the base spec with `probe = 0.5` on."""
    register_defence("probe", behaviour, annotation=float, default=0.0)
    plan = compile_spec(load_spec(write_spec(base_spec + "probe = 0.5\nweight_decay = 0.2\n")))
    node = plan.of_kind("clean")[0]
    workspace = Workspace(tmp_path / "ws")
    ctx = Context(node_record(node), workspace.run_dir(node), workspace, RunSettings(),
                  torch.device("cpu"))
    defences(ctx)(None, None, None)
    return node


def test_a_defence_gets_its_nodes_typed_config(registries, write_spec, base_spec, tmp_path):
    seen = {}

    def probe(value, setup):
        seen.update(value=value, config=setup.config, seed=setup.seed)
        return Pieces()

    node = _setup_of_clean_node(write_spec, base_spec, tmp_path, probe)
    config = seen["config"]
    assert type(config) is type(node.config)  # the clean node's config model, not a dict
    assert (config.lr, config.epochs, config.weight_decay, config.probe) == \
        (node.config.lr, 2, 0.2, 0.5)
    assert config.data.size == 64 and seen["value"] == 0.5 and seen["seed"] == config.seed


def test_a_plugin_reading_setup_config_as_a_dict_still_works(registries, write_spec,
                                                             base_spec, tmp_path):
    read = {}

    def old_style(value, setup):
        with pytest.warns(DeprecationWarning, match=r"read config\.lr, not config\['lr'\]"):
            read["lr"] = setup.config["lr"]
        with pytest.warns(DeprecationWarning):
            read["data"] = setup.config["data"]
            read["missing"] = setup.config.get("no_such_field", 7)
            read["has"] = ("weight_decay" in setup.config, "no_such_field" in setup.config)
        return Pieces()

    node = _setup_of_clean_node(write_spec, base_spec, tmp_path, old_style)
    assert read["lr"] == node.config.lr and read["missing"] == 7
    assert read["data"]["size"] == 64  # a table reads as its JSON, as node.json holds it
    assert read["has"] == (True, False)


def test_roclip_weights_its_term_by_the_typed_mmcl_weight():
    setup = types.SimpleNamespace(seed=0, checkpoints=None, device=torch.device("cpu"),
                                  config=Training(objective="mmcl", mmcl_weight=0.25))
    pieces = build_roclip(RoClip(pool_size=8, every=1, augment=False), setup)
    assert [(term.name, term.weight) for term in pieces.terms] == [("mmcl", 0.25)]


def test_safeclip_reads_weight_and_rate_schedule_from_the_typed_config():
    spec = SafeClip()
    cfg = Training(objective="mmcl+ssl", mmcl_weight=0.5, lr=3e-4, warmup_steps=7, epochs=9)
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    setup = types.SimpleNamespace(seed=0, checkpoints=None, device=torch.device("cpu"),
                                  config=cfg, optimizer=optimizer,
                                  data=types.SimpleNamespace(steps_per_epoch=4))
    pieces = build_safeclip(spec, setup)
    assert [(term.name, term.weight) for term in pieces.terms] == [("mmcl", 0.5)]
    pieces.before_step(0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(
        phase_lr(spec, 3e-4, 7, 9, 0, "inmodal", 0, 1, 4, None))
