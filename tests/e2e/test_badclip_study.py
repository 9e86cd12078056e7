"""A BadCLIP study end to end with the local executor (each node in its own process): the
trigger node runs before poisoning and every node downstream reads its patch."""

import textwrap

import pytest

from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study

pytestmark = pytest.mark.slow


def test_badclip_study_runs_in_node_processes(tmp_path):
    (tmp_path / "clip.toml").write_text(textwrap.dedent("""
        [study]
        name = "clip"
        [data]
        train = { format = "fashion_mnist", size = 128 }
        eval = { format = "fashion_mnist", split = "test", size = 32 }
        [attack]
        kind = "none"
        [model]
        arch = "xspec-vit-micro"
        [pretrain]
        objective = "mmcl"
        epochs = 1
        batch_size = 32
        warmup_steps = 1
        select = "final"
        [evaluate]
        metrics = ["top1"]
        """))
    (tmp_path / "bc.toml").write_text(textwrap.dedent("""
        [study]
        name = "bc"
        [data]
        train = { format = "fashion_mnist", size = 128 }
        clean = { size = 32 }
        eval = { format = "fashion_mnist", split = "test", size = 32 }
        [attack]
        kind = "badclip"
        target = "bag"
        poisons = 8
        surrogate = { study = "clip.toml", node = "select" }
        size = 4
        epochs = 1
        batch_size = 4
        images = 8
        [model]
        arch = "xspec-vit-micro"
        [pretrain]
        objective = "mmcl"
        epochs = 1
        batch_size = 32
        warmup_steps = 1
        [clean]
        objective = "mmcl"
        epochs = 1
        batch_size = 16
        warmup_steps = 1
        """))
    study = open_study(tmp_path / "bc.toml")
    outcome = run_study(study, Workspace(tmp_path / "ws"), "local")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    assert {n.kind for n in study.plan.nodes.values()} >= {"badclip_trigger", "poison", "clean"}
