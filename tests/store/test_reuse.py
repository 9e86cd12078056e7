"""A run folder is reused only for the config it was made for, and a kind's version re-plans
that kind and what depends on it, nothing upstream."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.compiler.plan import compile_spec
from xspec.extend.registry import NODE_KINDS
from xspec.spec.load import load_spec
from xspec.store.reuse import ReuseRefused
from xspec.store.workspace import Workspace

from tests_support import wobble_attack  # conftest puts tests/ on sys.path


def _edit(run, change) -> None:
    record = json.loads(run.node_file.read_text())
    change(record["config"])
    run.node_file.write_text(json.dumps(record))


def test_xspec_run_refuses_a_hand_edited_node_json_naming_the_field(
        write_spec, base_spec, tmp_path):
    spec = write_spec(base_spec)
    plan = compile_spec(load_spec(spec))
    workspace = Workspace(tmp_path / "ws")
    pretrain = plan.of_kind("pretrain")[0]
    run = workspace.prepare(pretrain)
    _edit(run, lambda config: config.update(lr=0.5))
    result = CliRunner().invoke(app, ["run", str(spec), "-w", str(workspace.root),
                                      "--executor", "debug"])
    assert result.exit_code == 1 and isinstance(result.exception, ReuseRefused)
    assert "node.json differs" in str(result.exception)
    assert "in config.lr (edited by hand" in str(result.exception)
    assert not (workspace.run_dir(plan.of_kind("poison")[0]).path / "manifest.json").exists()


def test_a_nested_edit_is_named_by_its_path(write_spec, base_spec, tmp_path):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    workspace = Workspace(tmp_path / "ws")
    poison = plan.of_kind("poison")[0]
    _edit(workspace.prepare(poison), lambda config: config["trigger"].update(size=3))
    with pytest.raises(ReuseRefused, match=r"in config\.trigger\.size \(edited by hand"):
        workspace.check_reuse(plan)


def test_another_kinds_node_json_names_the_kind_apart_from_a_config_field_named_kind(
        write_spec, base_spec, tmp_path):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    workspace = Workspace(tmp_path / "ws")
    poison, clean = plan.of_kind("poison")[0], plan.of_kind("clean")[0]
    run = workspace.prepare(clean)
    run.node_file.write_text(workspace.prepare(poison).node_file.read_text())
    with pytest.raises(ReuseRefused, match=r"in kind, config\.kind, "):  # the attack's kind
        workspace.check_reuse(plan)


def test_an_unchanged_folder_is_reused_and_an_older_node_json_is_completed(
        write_spec, base_spec, tmp_path):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    workspace = Workspace(tmp_path / "ws")
    clean = plan.of_kind("clean")[0]
    run = workspace.prepare(clean)
    workspace.check_reuse(plan)  # the folder as written: reused
    _edit(run, lambda config: config.pop("poisons"))  # written before full configs were kept
    workspace.check_reuse(plan)
    assert json.loads(run.node_file.read_text())["config"]["poisons"] == 0


def test_a_changed_default_keeps_the_id_but_refuses_the_folder(
        registries, write_spec, base_spec, tmp_path):
    text = base_spec.replace('kind = "badnet"', 'kind = "wobble"')
    wobble_attack(0.5)
    before = compile_spec(load_spec(write_spec(text)))
    workspace = Workspace(tmp_path / "ws")
    workspace.prepare(before.of_kind("poison")[0])
    wobble_attack(0.7)  # a new release of the plugin changes the default
    after = compile_spec(load_spec(write_spec(text)))
    assert after.of_kind("poison")[0].id == before.of_kind("poison")[0].id
    with pytest.raises(ReuseRefused, match=r"config\.strength .*a default changed"):
        workspace.check_reuse(after)


def test_bumping_a_kinds_version_replans_that_kind_and_its_descendants_only(
        monkeypatch, write_spec, base_spec):
    text = base_spec + "\n[clean.shrink_perturb]\nshrink = [0.5]\nperturb = [0.0]\n"
    before = compile_spec(load_spec(write_spec(text)))
    select = NODE_KINDS.get("select")
    monkeypatch.setitem(NODE_KINDS._entries, "select", dataclasses.replace(select, version="3"))
    after = compile_spec(load_spec(write_spec(text)))

    def ids(plan, kind):
        return sorted(n.id for n in plan.of_kind(kind))

    for kind in ("poison", "pretrain"):
        assert ids(after, kind) == ids(before, kind), kind
    for kind in ("select", "shrink_perturb", "clean"):
        assert not set(ids(after, kind)) & set(ids(before, kind)), kind
