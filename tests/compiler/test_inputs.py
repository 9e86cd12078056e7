"""Inputs from other studies: their nodes join the plan (same ids), run first, and errors name
the key, the study and what it has."""

from pathlib import Path

import pytest

from xspec.compiler.plan import compile_spec
from xspec.errors import XspecError
from xspec.spec.load import load_spec

TOY = Path(__file__).resolve().parents[2] / "specs" / "toy"


def _plan(path):
    return compile_spec(load_spec(path))


def test_a_checkpoint_of_another_study_pulls_in_its_nodes_with_their_ids():
    upstream = _plan(TOY / "clip_stand_in.toml")
    plan = _plan(TOY / "fig03_finetuned.toml")
    (select,) = upstream.of_kind("select")
    assert set(upstream.nodes) <= set(plan.nodes)
    assert {i: plan.external[i] for i in upstream.nodes} == dict.fromkeys(
        upstream.nodes, ("toy_clip_stand_in", 1))
    for node in plan.own():
        if node.kind == "pretrain":
            assert select.id in node.deps and node.identity["model"]["init"] == {"input": "select"}
            assert node.lineage["pretrain.model.init"] == "toy_clip_stand_in:select"
    order = [n.id for n in plan.ordered()]
    assert max(order.index(i) for i in upstream.nodes) < min(
        order.index(n.id) for n in plan.own())


def test_pseudo_labels_from_a_stronger_model_feed_only_the_clustering_runs():
    plan = _plan(TOY / "fig07_deep_clustering.toml")
    (labeller,) = plan.of_kind("pseudo_labels")
    (stand_in,) = [n for n in plan.of_kind("select") if n.id in plan.external]
    assert stand_in.id in labeller.deps and labeller.identity["input"] == "select"
    fed = [n for n in plan.of_kind("clean") if labeller.id in n.deps]
    assert len(fed) == 4 and len(plan.of_kind("clean")) == 8
    assert all(n.identity["deep_cluster"]["labels"] == {"input": "pseudo_labels"} for n in fed)


@pytest.fixture
def pair(tmp_path, base_spec):
    def write(upstream: str, downstream_init: str) -> Path:
        (tmp_path / "up.toml").write_text(upstream)
        spec = base_spec.replace('arch = "xspec-vit-micro"',
                                 f'arch = "xspec-vit-micro"\ninit = {downstream_init}')
        (tmp_path / "down.toml").write_text(spec.replace('name = "t"', 'name = "down"'))
        return tmp_path / "down.toml"
    return write


def test_a_study_with_several_nodes_of_the_kind_asks_for_a_name(pair, base_spec):
    path = pair(base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "ssl"]'),
                '{ study = "up.toml", node = "select" }')
    with pytest.raises(XspecError) as info:
        _plan(path)
    assert str(info.value) == ("model.init: study 't' has 2 select nodes; name one (by its "
                               "name or `where`): select@objective=mmcl, select@objective=ssl")
    where = compile_spec(load_spec(pair(
        base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "ssl"]'),
        '{ study = "up.toml", node = "select", where = { objective = "ssl" } }')))
    assert where.nodes[where.own()[1].deps[-1]].name == "select@objective=ssl"
    named = compile_spec(load_spec(pair(
        base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "ssl"]'),
        '{ study = "up.toml", node = "select@objective=ssl" }')))
    (pretrain,) = named.own()[1:2]
    assert named.nodes[pretrain.deps[-1]].name == "select@objective=ssl"


def test_an_unknown_node_and_a_node_without_a_checkpoint_are_errors(pair, base_spec):
    with pytest.raises(XspecError, match=r"model.init: study 't' has no node 'best'; its nodes: "
                                         r"poison, pretrain, select, clean@lr=1e-5, clean@lr=2e-5"):
        _plan(pair(base_spec, '{ study = "up.toml", node = "best" }'))
    with pytest.raises(XspecError, match=r"model.init: poison of study 't' is a poison node; "
                                         r"need one of: pretrain, select, shrink_perturb, clean"):
        _plan(pair(base_spec, '{ study = "up.toml", node = "poison" }'))


def test_studies_that_name_each_other_are_a_cycle(tmp_path, base_spec):
    for me, other in (("a", "b"), ("b", "a")):
        text = base_spec.replace('name = "t"', f'name = "{me}"').replace(
            'arch = "xspec-vit-micro"',
            f'arch = "xspec-vit-micro"\ninit = {{ study = "{other}.toml" }}')
        (tmp_path / f"{me}.toml").write_text(text)
    with pytest.raises(XspecError, match=r"cycle: a.toml -> b.toml -> a.toml"):
        _plan(tmp_path / "a.toml")


def test_a_missing_study_file_names_the_key(pair, base_spec, tmp_path):
    with pytest.raises(XspecError) as info:
        _plan(pair(base_spec, '{ study = "nowhere.toml" }'))
    assert str(info.value).startswith(
        f"model.init: in the study it names ({tmp_path / 'nowhere.toml'}): ")
    assert "cannot read spec" in str(info.value)


def test_a_cleaning_only_study_keeps_the_upstream_run_order():
    """toy fig13 cleans toy table2's MMCL+SSL model, whose select matches the MMCL one's
    accuracy: the MMCL select comes first in the plan (the debug executor runs in plan order)."""
    plan = _plan(TOY / "fig13_large_cleaning_set.toml")
    order = [n.id for n in plan.ordered()]
    for node in plan.nodes.values():
        assert all(order.index(d) < order.index(node.id) for d in node.deps), node.name
    assert not plan.external  # the model it cleans is part of its own report


def test_status_and_json_name_the_study_an_input_comes_from(tmp_path):
    import json

    from rich.console import Console
    from typer.testing import CliRunner

    from xspec.cli import app
    from xspec.cli_views import status_table
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    study = open_study(TOY / "fig03_finetuned.toml")
    console = Console(width=100, record=True)
    status_table(console, study.plan, Workspace(tmp_path))
    assert "toy_clip_stand_in:select" in console.export_text()
    result = CliRunner().invoke(app, ["plan", str(TOY / "fig03_finetuned.toml"), "--json"])
    nodes = json.loads(result.output)["nodes"]
    assert {n["kind"] for n in nodes if n.get("from") == "toy_clip_stand_in"} == {
        "poison", "pretrain", "select"}


def test_cleaning_another_studys_model_needs_its_attack(tmp_path):
    text = (TOY / "fig13_large_cleaning_set.toml").read_text()
    text = text.replace('target = "bag"', 'target = "shirt"').replace(
        '"table2.toml"', repr(str(TOY / "table2.toml")).replace("'", '"'))
    spec = tmp_path / "fig13.toml"
    spec.write_text(text)
    with pytest.raises(XspecError, match=r"clean.start: .* was poisoned with \{'kind': 'badnet', "
                                         r"'target': 'bag'"):
        _plan(spec)
