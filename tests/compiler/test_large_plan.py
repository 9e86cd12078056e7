"""Large plans: a warning names the node count and the axes that multiply into it, and a run
writes each node's node.json when the node starts, not all of them before the first."""

import time

from typer.testing import CliRunner

from xspec.cli import app
from xspec.compiler import plan as plan_module
from xspec.executors.debug import DebugExecutor
from xspec.runtime import node
from xspec.store.workspace import Workspace
from xspec.study import open_study


def test_a_plan_over_the_threshold_warns_with_count_and_axes(write_spec, base_spec, monkeypatch):
    monkeypatch.setattr(plan_module, "LARGE_PLAN", 5)
    text = base_spec.replace("lr = [1e-5, 2e-5]", "lr = [1e-5, 2e-5, 3e-5, 4e-5]").replace(
        'objective = "mmcl"', 'objective = ["mmcl", "mmcl+ssl"]')
    spec = write_spec(text)
    study = open_study(spec)
    assert len(study.plan.nodes) == 13
    assert study.plan.notes[0] == (
        "large plan: 13 nodes (more than 5) from 8 variants: clean.lr (4 values) × "
        "pretrain.objective (2 values); each node is a run folder with checkpoints: narrow an "
        "axis or split the study")
    out = " ".join(CliRunner().invoke(app, ["validate", str(spec)]).output.split())
    assert "warning: large plan: 13 nodes" in out


def test_a_plan_under_the_threshold_has_no_warning(write_spec, base_spec):
    assert not any(n.startswith("large plan") for n in open_study(write_spec(base_spec)).plan.notes)


def test_node_files_are_written_as_nodes_start(write_spec, base_spec, tmp_path, monkeypatch):
    study = open_study(write_spec(base_spec))
    workspace = Workspace(tmp_path / "ws")
    seen = []

    def fake(ctx):
        seen.append(len(list(workspace.runs.glob("*/node.json"))))
        time.sleep(0.01)

    monkeypatch.setattr(node, "stage_of", lambda kind: fake)
    DebugExecutor().submit(study.plan, workspace, {"device": "cpu"})
    assert seen == [1, 2, 3, 4, 5]


def test_expanded_variants_carry_one_value_and_share_nothing():
    from xspec.spec.schema import Spec
    from xspec.spec.sweep import expand

    lrs = [i * 1e-6 for i in range(1, 2001)] + [1e-6]  # a repeat: dropped, its first index kept
    raw = {"study": {"name": "s"}, "clean": {"lr": lrs, "epochs": [1, 2]},
           "pretrain": {"objective": "mmcl"}}
    axes, variants = expand(raw, Spec)
    assert len(variants) == 4000
    assert variants[-1][0]["clean"] == {"lr": 2000e-6, "epochs": 2}
    assert variants[1][1] == {("clean", "epochs"): 0, ("clean", "lr"): 1}
    variants[0][0]["pretrain"]["objective"] = "changed"
    assert variants[1][0]["pretrain"]["objective"] == "mmcl" == raw["pretrain"]["objective"]
    assert raw["clean"]["lr"] is lrs
