"""The SLURM executor without SLURM: options -> submitit parameters (golden), time limits,
option errors, DAG layers, and how status.json and squeue merge into a node's state."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit

from xspec.errors import XspecError
from xspec.executors.slurm import _state, layers, parse_time, slurm_parameters
from xspec.store.workspace import RunDir, atomic_write_json
from xspec.study import open_study

GOLDEN = Path(__file__).resolve().parent / "golden"
MINI = Path(__file__).resolve().parents[2] / "specs" / "toy" / "mini.toml"

CLI = {"partition": "gpu", "gpus_per_node": 2, "time": "24:00:00", "array_parallelism": 8,
       "cpus_per_task": 8, "mem_gb": 64}
CASES = {
    "defaults/pretrain": ({}, "pretrain"),
    "defaults/poison": ({}, "poison"),
    "cli/clean": (CLI, "clean"),
    "cli/select (no GPU)": (CLI, "select"),
    "unset flags are dropped": ({"partition": None, "time": None, "gpus_per_node": None},
                                "clean"),
    "one minute": ({"time": "1"}, "pretrain"),
    "two minutes": ({"time": "0:02:00"}, "pretrain"),
    "days": ({"time": "2-12"}, "pretrain"),
    "two machines per training job": ({"nodes": 2, "gpus_per_node": 8}, "pretrain"),
    "two machines asked, select runs on one": ({"nodes": 2, "gpus_per_node": 8}, "select"),
    "everything else": ({"account": "lab", "qos": "high", "constraint": "a100",
                         "exclude": "node[1-2]", "signal_delay_s": 120, "max_requeues": 3,
                         "additional": {"mail-type": "END", "hold": True}}, "pretrain"),
}


def compare_golden(name: str, text: str) -> None:
    """Write the golden file if it is missing, else compare line by line."""
    path = GOLDEN / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        pytest.skip(f"wrote golden file {path}; check it and commit it")
    assert text.splitlines() == path.read_text().splitlines()


def test_slurm_parameters_golden():
    result = {name: slurm_parameters(options, SimpleNamespace(kind=kind))
              for name, (options, kind) in CASES.items()}
    compare_golden("slurm_parameters.json", json.dumps(result, indent=2, sort_keys=True) + "\n")


def test_submitit_accepts_the_parameters_and_writes_this_sbatch_script(monkeypatch):
    # submitit refuses to build a SLURM executor where `srun` is missing; writing the script
    # needs no SLURM, so this runs on a laptop too.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    executor = submitit.AutoExecutor(folder="/ws/slurm/%j", cluster="slurm")
    for options, kind in CASES.values():
        executor.update_parameters(**slurm_parameters(options, SimpleNamespace(kind=kind)))
    executor = submitit.AutoExecutor(folder="/ws/slurm/%j", cluster="slurm")
    executor.update_parameters(**slurm_parameters(CLI, SimpleNamespace(kind="pretrain")),
                               slurm_additional_parameters={"dependency": "afterok:7:9_0"})
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit X",
                                                           "uid")
    compare_golden("sbatch_pretrain.txt", script)


@pytest.mark.parametrize("text, minutes", [
    ("90", 90), ("1:30", 2), ("24:00:00", 1440), ("0:00:30", 1), ("2-12", 3600),
    ("1-02:03", 1563), ("1-00:00:01", 1441), (45, 45),
])
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text, message", [
    ("tomorrow", "slurm time 'tomorrow': expected MM, HH:MM:SS or D-HH:MM:SS"),
    ("0", "slurm time '0': must be at least one minute"),
    ("1:2:3:4", "slurm time '1:2:3:4': expected MM, HH:MM:SS or D-HH:MM:SS"),
])
def test_parse_time_errors(text, message):
    with pytest.raises(XspecError) as info:
        parse_time(text)
    assert str(info.value) == message


def test_every_bad_option_is_reported_at_once():
    with pytest.raises(XspecError) as info:
        slurm_parameters({"gpus": 1, "time": True, "gpus_per_node": 0},
                         SimpleNamespace(kind="clean"))
    assert sorted(str(info.value).splitlines()) == [  # the [cluster] table's checks
        "slurm option 'gpus_per_node': input should be greater than 0 (got 0)",
        "slurm option 'time': slurm time True: expected MM, HH:MM:SS or D-HH:MM:SS, or minutes",
        "unknown slurm option 'gpus'; allowed: account, additional, array_parallelism, "
        "constraint, cpus_per_task, exclude, gpus_per_node, max_requeues, mem_gb, nodes, "
        "partition, qos, signal_delay_s, tasks_per_node, time",
    ]


def test_layers_of_the_mini_study():
    plan = open_study(MINI).plan
    assert {(n.kind, d) for n in plan.ordered() for d in [layers(plan)[n.id]]} == {
        ("poison", 0), ("pretrain", 1), ("select", 2), ("clean", 3)}


JOB = {"job_id": "7_1", "stderr": "/ws/slurm/7_1/7_1_0_log.err"}


@pytest.mark.parametrize("status, job, queue, expected", [
    (None, None, {}, ("pending", "")),
    ({"state": "done"}, JOB, {"7_1": ("RUNNING", "None")}, ("done", "")),
    (None, JOB, {"7_1": ("PENDING", "Dependency")}, ("queued", "job 7_1 (Dependency)")),
    ({"state": "failed", "error": "boom"}, JOB, {"7_1": ("PENDING", "None")},
     ("queued", "job 7_1")),
    (None, JOB, {"7_1": ("PENDING", "DependencyNeverSatisfied")},
     ("pending", "blocked: job 7_1 waits on a failed dependency; resubmit to retry")),
    ({"state": "running", "epoch": 3}, JOB, {"7_1": ("RUNNING", "None")},
     ("running", "job 7_1, epoch 3\nlog: RUN/log.txt")),
    ({"state": "running", "epoch": 3}, JOB, {"7_1": ("PENDING", "BeginTime")},
     ("queued", "job 7_1 (BeginTime)")),
    ({"state": "failed", "error": "DataError: no file"}, JOB, {"7_1": ("FAILED", "None")},
     ("failed", "DataError: no file\nlog: RUN/log.txt\nslurm log: /ws/slurm/7_1/7_1_0_log.err")),
    ({"state": "failed", "error": "boom"}, None, {}, ("failed", "boom\nlog: RUN/log.txt")),
    ({"state": "running"}, JOB, {"7_1": ("TIMEOUT", "None")},
     ("failed", "job 7_1 ended TIMEOUT before the node finished\n"
                "slurm log: /ws/slurm/7_1/7_1_0_log.err")),
    ({"state": "running"}, JOB, {},
     ("failed", "job 7_1 is gone before the node finished\n"
                "slurm log: /ws/slurm/7_1/7_1_0_log.err")),
    (None, JOB, {"7_1": ("CANCELLED", "None")},
     ("failed", "job 7_1 ended CANCELLED before the node finished\n"
                "slurm log: /ws/slurm/7_1/7_1_0_log.err")),
    (None, JOB, {}, ("pending", "")),
    ({"state": "running", "pid": 12, "host": "h"}, None, {},
     ("running", "outside SLURM (pid 12 on h)")),
])
def test_state_merges_status_json_and_squeue(tmp_path, status, job, queue, expected):
    run = RunDir(tmp_path)
    if status is not None:
        atomic_write_json(run.status_file, status)
    state, detail = _state(run, job, queue)
    assert (state, detail.replace(str(tmp_path), "RUN")) == expected


def test_a_local_run_whose_process_is_gone_is_failed(tmp_path):
    import os
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    run = RunDir(tmp_path)
    atomic_write_json(run.status_file, {"state": "running", "pid": child.pid,
                                        "host": os.uname().nodename})
    assert _state(run, None, {}) == (
        "failed", f"process {child.pid} on {os.uname().nodename} is gone before the node "
                  f"finished (killed?)\nlog: {run.log_file}")
