"""[decree]: a decree node per pre-trained and/or cleaned model, after that model's node; its
settings and DECREE's version in its id, no other node's id moved."""

import pytest

from xspec.compiler.plan import compile_spec
from xspec.errors import XspecError
from xspec.spec.load import load_spec

DECREE = "\n[decree]\nshadow = 32\nepochs = 5\n"


def _plan(write_spec, text, name="spec.toml"):
    return compile_spec(load_spec(write_spec(text, name)))


@pytest.mark.parametrize("models,inputs", [
    ("both", {"select": 1, "clean": 2}),
    ("pretrained", {"select": 1}),
    ("cleaned", {"clean": 2}),
])
def test_one_decree_node_per_model(write_spec, base_spec, models, inputs):
    plan = _plan(write_spec, base_spec + DECREE + f'models = "{models}"\n')
    nodes = plan.of_kind("decree")
    found: dict = {}
    for node in nodes:
        (dep,) = node.deps
        assert plan.nodes[dep].kind == node.config.input
        found[node.config.input] = found.get(node.config.input, 0) + 1
        assert node.config.plugins == {"detector:decree": "1"}
        assert node.config.shadow == 32 and node.config.lr == 0.5
        assert node.config.source["split"] == "test"
        assert node.lineage["poison.kind"] == "badnet"  # the report's ground truth
    assert found == inputs


def test_decree_adds_nodes_and_moves_no_other_id(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec + DECREE, "b.toml")
    assert set(before.nodes) < set(after.nodes)
    assert {after.nodes[i].kind for i in set(after.nodes) - set(before.nodes)} == {"decree"}
    changed = _plan(write_spec, base_spec + DECREE + "pl1_threshold = 0.05\n", "c.toml")
    assert set(changed.nodes) - set(after.nodes) == {n.id for n in changed.of_kind("decree")}


def test_the_version_is_in_the_id(write_spec, base_spec, monkeypatch):
    import xspec.compiler.decree as decree

    first = {n.id for n in _plan(write_spec, base_spec + DECREE, "a.toml").of_kind("decree")}
    monkeypatch.setattr(decree, "VERSION", "2")
    second = {n.id for n in _plan(write_spec, base_spec + DECREE, "b.toml").of_kind("decree")}
    assert first.isdisjoint(second)


@pytest.mark.parametrize("text,expected", [
    ('models = "all"', "decree.models"),
    ("shadow = 0", "decree.shadow"),
    ("pl1_threshold = 2", "decree.pl1_threshold"),
    ("epoch = 3", "decree.epoch"),
])
def test_bad_decree_values_name_the_key(write_spec, base_spec, text, expected):
    with pytest.raises(XspecError) as info:
        _plan(write_spec, base_spec + "\n[decree]\n" + text + "\n")
    assert expected in str(info.value)
