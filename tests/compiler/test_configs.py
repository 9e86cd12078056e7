"""Typed node configs: a kind's model checks every node's config when compiling and hands the
stage a typed object; select and shrink_perturb have theirs."""

import pytest

from xspec.compiler.configs import SelectConfig, ShrinkPerturbConfig, typed
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


def test_kinds_without_a_model_have_only_the_dict():
    ctx = Context({"kind": "pretrain", "config": {"lr": 1.0}}, None, None, {}, None)
    assert ctx.cfg is None and ctx.config == {"lr": 1.0}
