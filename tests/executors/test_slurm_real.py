"""The SLURM executor against a real single-node SLURM (see conftest.py).

Two studies are submitted at the start and share the node's CPUs: `slurm_study.toml` (five
nodes in four layers; its pre-training is requeued mid-training with `scontrol requeue`) and
`slurm_timeout.toml` (a pre-training that outlasts a one-minute time limit).
"""

import json
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from xspec.executors.slurm import SlurmExecutor, read_job, squeue
from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study
from tests_executors_support import finished, wait_until  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
STUDY = HERE / "slurm_study.toml"
TIMEOUT_STUDY = HERE / "slurm_timeout.toml"


def submit(spec: Path, root: Path, **options):
    study, workspace = open_study(spec), Workspace(root)
    started = time.monotonic()
    jobs = SlurmExecutor().submit(study.plan, workspace, study.settings(), options).jobs
    return study, workspace, jobs, time.monotonic() - started


def metric_rows(study, workspace) -> list[tuple]:
    ingest_study(study, workspace)
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    try:
        return con.execute("""SELECT n.kind, m.node_id, m.epoch, m.split, m.metric, count(*)
            FROM metrics m JOIN nodes n ON n.id = m.node_id GROUP BY ALL ORDER BY ALL""").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def timeout_study(slurm_cluster, tmp_path_factory):
    return submit(TIMEOUT_STUDY, tmp_path_factory.mktemp("timeout"), time="1")


@pytest.fixture(scope="module")
def main_study(slurm_cluster, tmp_path_factory):
    return submit(STUDY, tmp_path_factory.mktemp("main"), time="10")


def test_submit_returns_at_once_with_one_job_per_kind_and_layer(timeout_study, main_study):
    study, workspace, jobs, seconds = main_study
    assert seconds < 15
    assert [n.kind for n, _ in jobs] == ["poison", "pretrain", "select", "clean", "clean"]
    ids = {n.kind: job_id for n, job_id in jobs}
    clean = [job_id for n, job_id in jobs if n.kind == "clean"]
    array = clean[0].split("_")[0]
    assert clean == [f"{array}_0", f"{array}_1"]
    record = read_job(workspace.run_dir(jobs[3][0]))
    assert record["job_id"] == clean[0] and record["array_index"] == 0
    kind, after = record["dependency"].split(":", 1)
    assert kind == "afterok" and set(after.split(":")) == {ids["poison"], ids["select"]}
    assert record["stderr"].startswith(str(workspace.root / "slurm" / clean[0]))
    states = SlurmExecutor().states(study.plan, workspace)
    assert {s for s, _ in states.values()} <= {"queued", "running", "done"}
    assert set(squeue([j for _, j in jobs])) == {j for _, j in jobs}


def test_requeued_job_resumes_from_its_checkpoint(main_study):
    study, workspace, jobs, _ = main_study
    node, job_id = next((n, j) for n, j in jobs if n.kind == "pretrain")
    run = workspace.run_dir(node)
    status = wait_until(lambda: (s := run.status()).get("state") == "running"
                        and (s.get("epoch") or 0) >= 1 and s, "pre-training to reach epoch 1",
                        every=0.1)
    assert status["epoch"] < node.identity["epochs"] - 3, "pre-training went too fast to requeue"
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)
    wait_until(lambda: run.done, "the requeued pre-training to finish")
    log = run.log_file.read_text()
    assert "resuming after epoch" in log, log
    resumed = int(log.split("resuming after epoch ")[1].split()[0])
    assert resumed >= status["epoch"]


def test_study_finishes_and_metrics_land_in_duckdb(main_study):
    study, workspace, _, _ = main_study
    states = wait_until(lambda: finished(study, workspace), "the study to finish")
    assert {s for s, _ in states.values()} == {"done"}, states
    rows = metric_rows(study, workspace)
    assert all(count == 1 for *_, count in rows), [r for r in rows if r[-1] != 1]
    epochs = lambda kind: {e for k, _, e, split, m, _ in rows  # noqa: E731
                           if (k, split, m) == (kind, "eval", "top1")}
    assert epochs("pretrain") == set(range(1, 11))
    assert epochs("clean") == {0, 1}
    assert len({node for k, node, *_ in rows if k == "clean"}) == 2


def test_resubmitting_a_finished_study_submits_nothing(main_study):
    study, workspace, _, _ = main_study
    wait_until(lambda: finished(study, workspace), "the study to finish")
    folders = sorted(p.name for p in (workspace.root / "slurm").iterdir())
    assert submit(STUDY, workspace.root, time="10")[2] == []
    assert sorted(p.name for p in (workspace.root / "slurm").iterdir()) == folders


def test_cancel_then_resubmit_retries_the_cancelled_nodes(slurm_cluster, tmp_path):
    study, workspace, jobs, _ = submit(STUDY, tmp_path, time="10", additional={"hold": True})
    ids = [job_id for _, job_id in jobs]
    assert sorted(SlurmExecutor().cancel(study.plan, workspace)) == sorted(ids)
    states = SlurmExecutor().states(study.plan, workspace)  # a cancelled array leaves squeue
    assert all((s, "CANCELLED" in d) in {("failed", True), ("pending", False)}
               for s, d in states.values()), states
    assert states[jobs[0][0].id][0] == "failed"
    again = submit(STUDY, tmp_path, time="10", additional={"hold": True})[2]
    assert [n.id for n, _ in again] == [n.id for n, _ in jobs]
    assert not set(j for _, j in again) & set(ids)
    assert json.loads((workspace.run_dir(jobs[0][0]).path / "slurm.json").read_text())[
        "previous"] == [ids[0]]
    assert submit(STUDY, tmp_path, time="10")[2] == []  # queued (held): nothing to submit
    assert len(SlurmExecutor().cancel(study.plan, workspace)) == len(ids)


def test_job_over_its_time_limit_is_requeued_and_completes(timeout_study):
    study, workspace, jobs, _ = timeout_study
    states = wait_until(lambda: finished(study, workspace), "the timed-out study to finish")
    assert {s for s, _ in states.values()} == {"done"}, states
    node = next(n for n, _ in jobs if n.kind == "pretrain")
    log = workspace.run_dir(node).log_file.read_text()
    assert "timed out or preempted; requeued" in log and "resuming after epoch" in log, log
    rows = metric_rows(study, workspace)
    assert all(count == 1 for *_, count in rows), [r for r in rows if r[-1] != 1]
    assert {e for k, _, e, split, m, _ in rows if (k, split, m) == ("pretrain", "eval", "top1")} \
        == set(range(1, node.identity["epochs"] + 1))
