"""A 2-task SLURM job trains one node with DDP over gloo: both tasks train, rank 0 writes."""


import pytest

from tests_executors_support import finished, wait_until
from xspec.store.workspace import Workspace
from xspec.study import open_study, submit_study
from tests_support import mini_spec  # noqa: E402  (conftest puts tests/ on sys.path)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

BODY = """
[pretrain]
objective = "mmcl+ssl"
epochs = 2
batch_size = 64
warmup_steps = 2
[cluster]
time = "10:00"
[cluster.pretrain]
tasks_per_node = 2
"""
SPEC = mini_spec('ddp', BODY, train=512, poisons=8)


def test_two_task_job_trains_a_node(slurm_cluster, tmp_path):
    spec = tmp_path / "ddp.toml"
    spec.write_text(SPEC)
    study, workspace = open_study(spec), Workspace(tmp_path / "ws")
    jobs = submit_study(study, workspace, "slurm", {})
    assert len(jobs) == len(study.plan.nodes) == 3
    states = wait_until(lambda: finished(study, workspace), "the DDP study to finish")
    assert {state for state, _ in states.values()} == {"done"}, states
    node = study.plan.of_kind("pretrain")[0]
    run = workspace.run_dir(node)
    assert run.status()["world_size"] == 2
    log = run.log_file.read_text()
    assert log.count("epoch 1/2") == 1 and log.count("epoch 2/2") == 1  # rank 0 alone writes
