"""Typed node configs: the compiler builds each node's config as its kind's model, node.json holds
its full dump and the node process reads it back as the same class; what enters the id is the
dump under one rule (fields marked `OmitAtDefault` leave it at their default)."""

import pytest

from xspec.compiler.configs import CleanConfig, SelectConfig, config_models, typed
from xspec.compiler.plan import compile_spec
from xspec.errors import CompileError
from xspec.runtime.node import Context
from xspec.spec.load import load_spec
from xspec.spec.schema import BadNet
from xspec.store.workspace import node_record


def _typed(node):
    """The config as a node process gets it: from node.json's JSON."""
    return Context(node_record(node), None, None, {}, None).cfg


def test_node_json_reads_back_as_the_same_typed_config(write_spec, base_spec):
    text = base_spec + "\n[clean.shrink_perturb]\nshrink = [0.5]\nperturb = [0.0, 0.01]\n"
    plan = compile_spec(load_spec(write_spec(text)))
    for node in plan.ordered():
        cfg = _typed(node)
        assert type(cfg) is type(node.config) and cfg == node.config, node.kind
    (shrink,) = plan.of_kind("shrink_perturb")
    assert (shrink.config.shrink, shrink.config.perturb, shrink.config.noise) == (
        [0.5], [0.0, 0.01], "gaussian")
    (select,) = plan.of_kind("select")
    assert select.config == SelectConfig(policy="best_accuracy")


def test_the_attack_and_data_sources_are_typed_by_the_registered_models(write_spec, base_spec):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    (poison,), (pretrain,) = plan.of_kind("poison"), plan.of_kind("pretrain")
    assert isinstance(_typed(poison).attack, BadNet)
    assert (_typed(poison).attack.target, _typed(poison).attack.poisons) == ("bag", 16)
    assert poison.identity["target"] == "bag" and "attack" not in poison.identity  # flat, as ids
    pre = _typed(pretrain)
    assert (pre.objective, pre.epochs, pre.model.arch, pre.model.init) == (
        "mmcl", 2, "xspec-vit-micro", "scratch")
    for clean in plan.of_kind("clean"):
        cfg = _typed(clean)
        assert isinstance(cfg, CleanConfig) and cfg.data.size == 64
        assert cfg.data.source == pre.train and cfg.data.source.format == "fashion_mnist"


def test_fields_at_their_default_stay_out_of_the_id_but_not_out_of_node_json(
        write_spec, base_spec):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    clean = plan.of_kind("clean")[0]
    marked = {"poisons", "optimizer", "schedule", "text_augment", "poison_source", "l2_weight"}
    assert not marked & set(clean.identity)
    assert marked <= set(node_record(clean)["config"])
    cfg = _typed(clean)
    assert (cfg.poisons, cfg.optimizer, cfg.schedule, cfg.text_augment) == (
        0, "fresh", "paper", "per_epoch")
    assert not cfg.continues_optimizer and cfg.poison_source is None


def test_ablation_fields_and_defences_are_typed(write_spec, base_spec):
    text = base_spec + ("poisons = 5\npoison_source = \"pretrain\"\noptimizer = \"pretrain\"\n"
                        "schedule = \"cleanclip\"\n[clean.deep_cluster]\nk = 10\n")
    plan = compile_spec(load_spec(write_spec(text)))
    cfg = _typed(plan.of_kind("clean")[0])
    assert (cfg.poisons, cfg.poison_source, cfg.schedule) == (5, "pretrain", "cleanclip")
    assert cfg.continues_optimizer
    assert (cfg.deep_cluster.k, cfg.deep_cluster.assign) == (10, "epoch")
    assert _typed(plan.of_kind("pretrain")[0]).save_optimizer


def test_a_config_its_model_refuses_is_a_compile_error():
    with pytest.raises(CompileError, match=r"select node: config.polcy: Extra inputs are not "
                                           r"permitted \(node config and its model SelectConfig"):
        typed(SelectConfig, {"policy": "final", "polcy": "x"}, "select node")


def test_a_clean_config_with_an_unknown_key_is_refused(write_spec, base_spec):
    clean = compile_spec(load_spec(write_spec(base_spec))).of_kind("clean")[0]
    with pytest.raises(CompileError, match=r"config.deep_clustr: Extra inputs are not permitted"):
        typed(config_models()["clean"], {**node_record(clean)["config"], "deep_clustr": {}},
              "clean node")


def test_detect_and_pretrain_defence_configs_are_typed_and_read_back(write_spec, base_spec):
    text = base_spec.replace("[pretrain]\n", "[pretrain]\nroclip = { every = 3 }\n", 1)
    text += "\n[detect.lid]\n[detect.k_distance]\nk = 8\n"
    plan = compile_spec(load_spec(write_spec(text)))
    (detect,) = plan.of_kind("detect")
    assert detect.config.detectors.on()["k_distance"].k == 8
    assert detect.config.detectors.on().keys() == {"lid", "k_distance"}
    (pretrain,) = plan.of_kind("pretrain")
    assert pretrain.config.roclip.every == 3
    for node in (detect, pretrain):
        assert _typed(node) == node.config, node.kind


def test_what_reports_show_for_a_left_out_field_comes_from_the_typed_configs():
    from xspec.reports.load import fallback
    from xspec.store.results import NODES

    assert fallback("clean.poisons") == "0" and fallback("clean.l2_weight") == "0"
    assert fallback("clean.schedule") == "paper"  # a fidelity option, left out at its default
    assert fallback("pretrain.precision") == "bf16"
    assert fallback("poison.resize") == "crop"  # an attack field (poison configs flatten it)
    assert fallback("clean.deep_cluster.k") == "off" and fallback("pretrain.roclip.every") == "off"
    assert fallback("clean.lr") is None  # always in the id
    assert "coalesce(n.lineage->>'$.\"clean.poisons\"', '0')" in NODES


def test_the_attack_is_the_poison_configs_alone_and_read_from_there(write_spec, base_spec,
                                                                      tmp_path):
    from xspec.runtime.handoffs import upstream_attack
    from xspec.store.workspace import Workspace

    text = base_spec + "\n[clean.shrink_perturb]\nshrink = [0.5]\nperturb = [0.0]\n"
    text += "\n[detect.lid]\n"
    plan = compile_spec(load_spec(write_spec(text)))
    for node in plan.ordered():
        if node.kind != "poison":
            assert "attack" not in node.identity, node.kind
        assert [k for k in node.lineage if k.endswith(".poisons")] == ["poison.poisons"], node.kind
    workspace = Workspace(tmp_path / "ws")
    for node in plan.ordered():
        workspace.prepare(node)
    for kind in ("pretrain", "shrink_perturb", "clean", "detect"):
        node = plan.of_kind(kind)[0]
        ctx = Context(node_record(node), workspace.run_dir(node), workspace, {}, None)
        attack = upstream_attack(ctx)  # a shrink_perturb node's poison is two nodes up
        assert (attack.target, attack.seed) == ("bag", 0), kind
