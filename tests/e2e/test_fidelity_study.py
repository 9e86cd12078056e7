"""A study that asks for every behaviour of the original code at once (docs/FIDELITY.md) runs end
to end on the ResNet: the cleaning run continues the pre-training optimizer (and says so),
poisons pairs of its own cleaning set, draws EDA once per pair, follows the original schedule
and clusters online."""

import pytest

from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study
from tests_support import mini_spec  # noqa: E402  (conftest puts tests/ on sys.path)

pytestmark = pytest.mark.slow

BODY = """
[pretrain]
objective = "mmcl+ssl"
epochs = 2
batch_size = 32
lr = 1e-3
warmup_steps = 2
schedule = "cleanclip"
text_augment = "once"
select = "final"

[clean]
objective = "mmcl+ssl"
lr = 1e-4
epochs = 2
batch_size = 16
weight_decay = 5.0
warmup_steps = 1
poisons = 3
optimizer = "pretrain"
schedule = "cleanclip"
text_augment = "once"

[clean.deep_cluster]
k = 4
assign = "online"

[evaluate]
batch_size = 64
"""
SPEC = mini_spec('fidelity', BODY, train=192, clean=64, trigger='{ size = 8, pattern = "cleanclip", location = "random" }', arch='xspec-rn-tiny')


def test_the_originals_behaviours_run_together(tmp_path):
    path = tmp_path / "fidelity.toml"
    path.write_text(SPEC)
    study, workspace = open_study(path), Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    (pretrain,) = study.plan.of_kind("pretrain")
    kept = sorted(p.name for p in workspace.run_dir(pretrain).checkpoints.glob("optimizer_*.pt"))
    assert kept == ["optimizer_1.pt", "optimizer_2.pt"]
    (clean,) = study.plan.of_kind("clean")
    log = (workspace.run_dir(clean).path / "log.txt").read_text()
    assert "3 pairs of the cleaning set of 64 poisoned afresh" in log
    assert ("optimizer continued from pre-training: weight decay 0.1 restored from its "
            "checkpoint (clean.weight_decay = 5 has no effect)") in log
