"""`[run] pack` on a real single-node SLURM (see conftest.py): a cleaning grid of two learning
rates is one job that trains both; each node keeps its own status, metrics and slurm.json."""

from pathlib import Path

import pytest

from xspec.executors.slurm import SlurmExecutor, read_job
from xspec.store.workspace import Workspace
from xspec.study import open_study
from tests_executors_support import finished, wait_until  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STUDY = Path(__file__).resolve().parent / "slurm_study.toml"


def test_a_packed_grid_is_one_slurm_job_and_each_node_finishes(slurm_cluster, tmp_path):
    text = STUDY.read_text().replace("epochs = 10", "epochs = 2")
    spec = tmp_path / "pack.toml"
    spec.write_text(text.replace("[run]\n", "[run]\npack = 2\n"))
    study, workspace = open_study(spec), Workspace(tmp_path / "ws")
    jobs = SlurmExecutor().submit(study.plan, workspace, study.settings(), {"time": "10"}).jobs
    cleans = study.plan.of_kind("clean")
    clean_jobs = {job_id for node, job_id in jobs if node.kind == "clean"}
    assert len(jobs) == 5 and len(clean_jobs) == 1
    assert all(read_job(workspace.run_dir(n))["job_id"] in clean_jobs for n in cleans)
    states = wait_until(lambda: finished(study, workspace), "the packed study to finish")
    assert {s for s, _ in states.values()} == {"done"}, states
    for node in cleans:
        status = workspace.run_dir(node).status()
        assert status["packed_with"] == [n.id for n in cleans if n is not node]
        assert workspace.run_dir(node).checkpoint(1).exists()
