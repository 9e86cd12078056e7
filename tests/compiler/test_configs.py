"""Typed node configs: a kind's model checks every node's config when compiling and hands the
stage a typed object; every built-in kind has one, its defaults the spec's."""

import pytest

from xspec.compiler.configs import (
    CleanConfig, PoisonConfig, PretrainConfig, SelectConfig, ShrinkPerturbConfig, typed,
)
from xspec.compiler.plan import compile_spec
from xspec.errors import CompileError
from xspec.runtime.node import Context
from xspec.spec.load import load_spec


def test_select_and_shrink_perturb_configs_are_typed(write_spec, base_spec):
    text = base_spec + "\n[clean.shrink_perturb]\nshrink = [0.5]\nperturb = [0.0, 0.01]\n"
    plan = compile_spec(load_spec(write_spec(text)))
    (select,) = plan.of_kind("select")
    (shrink,) = plan.of_kind("shrink_perturb")
    ctx = Context({"kind": "shrink_perturb", "config": shrink.config}, None, None, {}, None)
    assert isinstance(ctx.cfg, ShrinkPerturbConfig)
    assert (ctx.cfg.shrink, ctx.cfg.perturb, ctx.cfg.noise) == ([0.5], [0.0, 0.01], "gaussian")
    assert typed(SelectConfig, select.config, "select") == SelectConfig(policy="best_accuracy")


def test_a_config_its_model_refuses_is_a_compile_error():
    with pytest.raises(CompileError, match=r"select node: config.polcy: Extra inputs are not "
                                           r"permitted \(node config and its model SelectConfig"):
        typed(SelectConfig, {"policy": "final", "polcy": "x"}, "select node")


def _typed(node):
    return Context({"kind": node.kind, "config": node.config}, None, None, {}, None).cfg


def test_every_builtin_kind_hands_its_stage_a_typed_config(write_spec, base_spec):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    (poison,), (pretrain,) = plan.of_kind("poison"), plan.of_kind("pretrain")
    assert isinstance(_typed(poison), PoisonConfig)
    assert _typed(poison).attack == {"kind": "badnet", "target": "bag", "poisons": 16,
                                     "trigger": poison.config["trigger"]}
    pre = _typed(pretrain)
    assert isinstance(pre, PretrainConfig)
    assert (pre.objective, pre.epochs, pre.model.arch, pre.model.init) == (
        "mmcl", 2, "xspec-vit-micro", "scratch")
    for clean in plan.of_kind("clean"):
        cfg = _typed(clean)
        assert isinstance(cfg, CleanConfig) and cfg.data.size == 64
        assert cfg.data.source == pretrain.config["train"]


def test_fields_the_compiler_leaves_out_at_their_default_read_the_specs_default(
        write_spec, base_spec):
    """Ablation and fidelity fields enter a config only when not the default (ids stay); the
    stage still reads the spec's default, not one the runtime restates."""
    plan = compile_spec(load_spec(write_spec(base_spec)))
    clean = plan.of_kind("clean")[0]
    assert not {"poisons", "optimizer", "schedule", "text_augment"} & set(clean.config)
    cfg = _typed(clean)
    assert (cfg.poisons, cfg.optimizer, cfg.schedule, cfg.text_augment) == (
        0, "fresh", "paper", "per_epoch")
    assert not cfg.continues_optimizer and not cfg.save_optimizer


def test_ablation_fields_and_defences_are_typed(write_spec, base_spec):
    text = base_spec + ("poisons = 5\npoison_source = \"pretrain\"\noptimizer = \"pretrain\"\n"
                        "schedule = \"cleanclip\"\n[clean.deep_cluster]\nk = 10\n")
    plan = compile_spec(load_spec(write_spec(text)))
    cfg = _typed(plan.of_kind("clean")[0])
    assert (cfg.poisons, cfg.poison_source, cfg.schedule) == (5, "pretrain", "cleanclip")
    assert cfg.continues_optimizer
    assert (cfg.deep_cluster.k, cfg.deep_cluster.assign) == (10, "epoch")
    assert _typed(plan.of_kind("pretrain")[0]).save_optimizer


def test_a_clean_config_with_an_unknown_key_is_refused(write_spec, base_spec):
    config = compile_spec(load_spec(write_spec(base_spec))).of_kind("clean")[0].config
    with pytest.raises(CompileError, match=r"deep_clustr: not a field of a clean node"):
        typed(CleanConfig, {**config, "deep_clustr": {}}, "clean node")
