"""The pseudo_labels stage end to end on a micro model and a handful of images: it labels the
cleaning pool (and the poisoned pairs left in it) with the stronger model's zero-shot classes.

Since the typed configs its classes source is a typed model: the stage once indexed it like a
dict (`source["format"]`) and failed every pseudo_labels node with "'FashionMnist' object is
not subscriptable" (fixed in eeaecb7; found only by running toy/fig07_deep_clustering)."""

import json

import pytest

from xspec.compiler.dag import Plan
from xspec.compiler.inputs import ancestors
from xspec.study import open_study, run_study
from xspec.store.workspace import Workspace

from tests_support import mini_spec  # conftest puts tests/ on sys.path

BODY = """
    [pretrain]
    objective = "mmcl"
    batch_size = 16
    epochs = 1
    select = "final"
    """

STRONGER = mini_spec("stronger", BODY + """
    [evaluate]
    metrics = ["top1"]

    [run]
    threads = 1
    """, train=32, evaluate=8, poisons=0)

CLUSTERED = mini_spec("clustered", BODY + """
    [clean]
    objective = "mmcl+ssl"
    epochs = 1

    [clean.deep_cluster]
    k = 4
    labels = { study = "stronger.toml", node = "select" }

    [run]
    threads = 1
    """, train=32, clean=8, evaluate=8, poisons=4)  # the 8 clean pairs are not the 4 poisoned


def _up_to(plan: Plan, kind: str) -> Plan:
    """The plan cut to the one node of `kind` and its ancestors (the cleaning runs skipped)."""
    (target,) = plan.of_kind(kind)
    keep = {node.id: node for node in ancestors(plan, target)}
    return Plan(plan.study, plan.spec_path, keep, external=plan.external)


@pytest.fixture
def labelled(tmp_path):
    (tmp_path / "stronger.toml").write_text(STRONGER)
    (tmp_path / "clustered.toml").write_text(CLUSTERED)
    study = open_study(tmp_path / "clustered.toml")
    study.plan = _up_to(study.plan, "pseudo_labels")
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    (node,) = study.plan.of_kind("pseudo_labels")
    return outcome, workspace.run_dir(node), workspace.run_dir(study.plan.of_kind("poison")[-1])


def test_labels_every_cleaning_image_and_the_poisons_left_in_the_pool(labelled):
    outcome, run, poison = labelled
    assert not outcome.failed, run.status().get("error")
    lines = (run.path / "labels.csv").read_text().splitlines()
    assert lines[0] == "index,label"
    rows = [tuple(map(int, line.split(","))) for line in lines[1:]]
    indices = [i for i, _ in rows]
    assert len(rows) == 12 and indices == sorted(set(indices))  # 8 clean + 4 poisoned, once each
    assert all(0 <= label < 10 for _, label in rows)  # Fashion-MNIST's ten classes
    manifest = json.loads((poison.path / "manifest.json").read_text())
    assert {e["index"] for e in manifest["poisoned"]} <= set(indices)
