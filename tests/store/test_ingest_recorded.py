"""Ingest and `xspec status` read what each run folder recorded (its node.json), not the spec
compiled now (issue 18): the run folders are the truth and the database is derived."""

import json

import duckdb
import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.compiler.plan import compile_spec
from xspec.runtime.records import MetricsLog
from xspec.spec.load import load_spec
from xspec.store.db import ingest
from xspec.store.workspace import Workspace

from tests_support import wobble_attack  # conftest puts tests/ on sys.path


def _ran(workspace: Workspace, plan, top1: float = 0.5) -> None:
    """Every node of `plan` as if it ran: node.json, metrics and status done."""
    for node in plan.ordered():
        run = workspace.prepare(node)
        metrics = MetricsLog(run.metrics_file, node.id)
        metrics.add(1, "eval", "top1", top1, n=64)
        metrics.flush()
        run.set_status("done")


@pytest.fixture
def ran(write_spec, base_spec, tmp_path):
    """The base study's plan, run (as `_ran` fakes it) into a fresh workspace, and the plan's
    first cleaning node."""
    plan = compile_spec(load_spec(write_spec(base_spec)))
    workspace = Workspace(tmp_path / "ws")
    _ran(workspace, plan, top1=0.625)
    return plan, workspace, plan.of_kind("clean")[0]


def _db(workspace: Workspace, query: str, params=()):
    with duckdb.connect(str(workspace.db_path), read_only=True) as con:
        return con.execute(query, list(params)).fetchall()


def test_ingest_keeps_the_config_a_run_had_after_a_default_changed(
        registries, write_spec, base_spec, tmp_path):
    text = base_spec.replace('kind = "badnet"', 'kind = "wobble"')
    wobble_attack(0.5)
    workspace = Workspace(tmp_path / "ws")
    _ran(workspace, compile_spec(load_spec(write_spec(text))))
    wobble_attack(0.7)  # a new release of the plugin changes the default; ids stay
    after = compile_spec(load_spec(write_spec(text)))
    assert after.of_kind("poison")[0].config.attack.strength == 0.7
    ingest(workspace, after)
    ((config,),) = _db(workspace, "SELECT config FROM nodes WHERE kind = 'poison'")
    assert json.loads(config)["strength"] == 0.5  # what the run was configured with


def test_ingest_keeps_the_lineage_and_config_of_a_hand_edited_node_json(ran):
    plan, workspace, clean = ran
    path = workspace.run_dir(clean).node_file
    record = json.loads(path.read_text())
    record["config"]["ssl_weight"] = 0.25
    record["lineage"]["clean.ssl_weight"] = 0.25
    path.write_text(json.dumps(record))
    ingest(workspace, plan)
    ((config, lineage),) = _db(workspace, "SELECT config, lineage FROM nodes WHERE id = ?",
                               [clean.id])
    assert json.loads(config)["ssl_weight"] == 0.25
    assert json.loads(lineage)["clean.ssl_weight"] == 0.25


@pytest.mark.parametrize("damage", ["truncate", "delete", "other_node"])
def test_a_damaged_node_json_is_named_and_the_nodes_results_are_kept(ran, capsys, damage):
    plan, workspace, clean = ran
    path = workspace.run_dir(clean).node_file
    if damage == "truncate":
        path.write_text(path.read_text()[:30])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_text(workspace.run_dir(plan.of_kind("poison")[0]).node_file.read_text())
    ingest(workspace, plan)
    err = capsys.readouterr().err
    why = {"truncate": "unreadable (truncated or garbled",
           "delete": "missing, though a node ran in the folder",
           "other_node": "names node"}[damage]
    assert f"xspec: {path}: {why}" in err
    assert f"node {clean.name}'s results are kept" in err
    assert _db(workspace, "SELECT status, detail->>'node_json' IS NOT NULL FROM nodes "
                          "WHERE id = ?", [clean.id]) == [("done", True)]
    assert _db(workspace, "SELECT value FROM metrics WHERE node_id = ?", [clean.id]) == \
        [(0.625,)]
    assert _db(workspace, "SELECT count(*) FROM nodes WHERE status = 'done'") == \
        [(len(plan.own()),)]


def test_a_node_not_started_is_pending_with_the_config_it_will_run_with(
        write_spec, base_spec, tmp_path, capsys):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    workspace = Workspace(tmp_path / "ws")
    (workspace.runs / plan.of_kind("clean")[0].run_name).mkdir(parents=True)  # claimed only
    ingest(workspace, plan)
    assert capsys.readouterr().err == ""
    assert _db(workspace, "SELECT DISTINCT status FROM nodes") == [("pending",)]


def test_status_without_a_spec_lists_every_run_folder_from_node_json(
        write_spec, base_spec, tmp_path, monkeypatch):
    spec = write_spec(base_spec)
    plan = compile_spec(load_spec(spec))
    workspace = Workspace(tmp_path / "ws")
    _ran(workspace, plan)
    clean = plan.of_kind("clean")
    workspace.run_dir(clean[1]).set_status("failed", error="RuntimeError: boom")
    workspace.run_dir(clean[0]).node_file.write_text("{")
    spec.unlink()  # nothing to compile: the run folders say it all
    import xspec.study

    monkeypatch.setattr(xspec.study, "open_study", lambda *a: pytest.fail("compiled a spec"))
    result = CliRunner().invoke(app, ["status", "-w", str(workspace.root)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"status of every run folder in {workspace.root}" in out
    for node in plan.ordered():
        assert node.short in out
    assert clean[1].name in out and "RuntimeError: boom" in out
    assert f"runs/{clean[0].run_name}/node.json: unreadable" in out
    assert out.count("done") == len(plan.ordered()) - 1  # the damaged one still shows done


def test_status_with_a_spec_names_a_folder_run_would_refuse(write_spec, base_spec, tmp_path):
    spec = write_spec(base_spec)
    plan = compile_spec(load_spec(spec))
    workspace = Workspace(tmp_path / "ws")
    _ran(workspace, plan)
    pretrain = plan.of_kind("pretrain")[0]
    path = workspace.run_dir(pretrain).node_file
    record = json.loads(path.read_text())
    record["config"]["lr"] = 0.5
    path.write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["status", str(spec), "-w", str(workspace.root)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "node.json differs from the spec in config.lr: `xspec run` refuses this folder" \
        in result.output


def test_status_of_a_missing_workspace_without_a_spec_is_one_error(tmp_path):
    result = CliRunner().invoke(app, ["status", "-w", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such workspace" in str(result.exception)


def test_a_lineage_made_by_an_older_rule_is_brought_up_to_date_when_the_config_agrees(ran):
    plan, workspace, clean = ran
    path = workspace.run_dir(clean).node_file
    record = json.loads(path.read_text())
    record["lineage"] = {"pretrain.attack.poisons": 16, **record["lineage"]}  # an older rule
    path.write_text(json.dumps(record))
    workspace.check_reuse(plan)  # what `xspec run` does first
    again = json.loads(path.read_text())
    assert again["lineage"] == clean.lineage and again["config"] == record["config"]
