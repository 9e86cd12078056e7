"""Plans: DAG shape, content ids stable under cosmetic changes and upstream-only on additions."""

import json
from pathlib import Path

from xspec.compiler.plan import compile_spec
from xspec.spec.load import load_spec


def _plan(write_spec, text, name="spec.toml"):
    return compile_spec(load_spec(write_spec(text, name)))


def test_dag_shape_and_dependencies(write_spec, base_spec):
    plan = _plan(write_spec, base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "ssl"]'))
    kinds = [n.kind for n in plan.ordered()]
    assert kinds.count("poison") == 1 and kinds.count("pretrain") == 2
    assert kinds.count("select") == 2 and kinds.count("clean") == 4
    for node in plan.of_kind("clean"):
        assert sorted(plan.nodes[d].kind for d in node.deps) == ["poison", "select"]
    for node in plan.of_kind("select"):
        assert [plan.nodes[d].kind for d in node.deps] == ["pretrain"]


def test_ids_ignore_formatting_key_order_and_comments(write_spec, base_spec):
    a = _plan(write_spec, base_spec, "a.toml")
    reordered = base_spec.replace("[attack]\nkind = \"badnet\"\ntarget = \"bag\"\npoisons = 16",
                                  "[attack]  # the backdoor\npoisons   = 16\n\ntarget = 'bag'\n"
                                  "kind = \"badnet\"")
    assert reordered != base_spec
    b = _plan(write_spec, reordered, "b.toml")
    assert set(a.nodes) == set(b.nodes)


def test_adding_a_cleaning_lr_adds_only_cleaning_nodes(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec.replace("[1e-5, 2e-5]", "[1e-5, 2e-5, 3e-5]"), "b.toml")
    added = set(after.nodes) - set(before.nodes)
    assert set(before.nodes) <= set(after.nodes)
    assert [after.nodes[i].kind for i in added] == ["clean"]


def test_changing_pretraining_changes_every_downstream_id(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec.replace("epochs = 2\n", "epochs = 3\n", 1), "b.toml")
    assert {n.id for n in before.of_kind("poison")} == {n.id for n in after.of_kind("poison")}
    for kind in ("pretrain", "select", "clean"):
        assert not {n.id for n in before.of_kind(kind)} & {n.id for n in after.of_kind(kind)}


def test_run_settings_never_change_ids(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec + "\n[run]\nthreads = 1\nconcurrency = 2\n", "b.toml")
    assert set(before.nodes) == set(after.nodes)


def test_repeated_lr_merges_and_is_noted(write_spec, base_spec):
    plan = _plan(write_spec, base_spec.replace("[1e-5, 2e-5]", "[1e-5, 2e-5, 1e-5]"))
    assert len(plan.of_kind("clean")) == 2
    assert plan.notes == ["clean.lr: dropped repeated value(s) 1e-05; 2 distinct of 3 written"]


def test_pinned_ids_of_the_mini_study():
    """Changing an id is a reviewed decision: update these when the runtime salt changes."""
    plan = compile_spec(load_spec(MINI))
    shorts = {n.name: n.short for n in plan.ordered()}
    assert shorts["poison"] == PINNED_POISON
    assert len(plan.nodes) == 9


PINNED_POISON = "033df271632b"  # runtime salt 2
MINI = Path(__file__).resolve().parents[2] / "specs" / "toy" / "mini.toml"


def test_names_are_deterministic_and_json_plan_is_complete(write_spec, base_spec):
    plan = _plan(write_spec, base_spec)
    names = [n.name for n in plan.of_kind("clean")]
    assert names == ["clean@lr=1e-5", "clean@lr=2e-5"]
    dumped = json.loads(json.dumps([{"id": n.id, "deps": n.deps, "config": n.identity}
                                    for n in plan.ordered()]))
    assert all(len(n["id"]) == 64 for n in dumped)


def test_match_accuracy_keeps_each_chain_lineage(write_spec, base_spec):
    text = base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "mmcl+ssl"]\n'
                             'select = { zip = "objective", values = ["best_accuracy", '
                             '"match_accuracy(mmcl)"] }')
    plan = _plan(write_spec, text)
    objectives = sorted(n.lineage["pretrain.objective"] for n in plan.of_kind("clean"))
    assert objectives == ["mmcl", "mmcl", "mmcl+ssl", "mmcl+ssl"]
    matched = next(n for n in plan.of_kind("select") if n.identity["policy"] == "match_accuracy")
    reference = next(n for n in plan.of_kind("select") if n.identity["policy"] == "best_accuracy")
    assert reference.id in matched.deps and matched.lineage["pretrain.objective"] == "mmcl+ssl"
