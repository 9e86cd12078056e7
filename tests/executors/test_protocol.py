"""Every executor speaks one protocol (submit, states, cancel), so the CLI names none of them."""

import os
import subprocess

import pytest

from xspec.errors import XspecError
from xspec.executors import EXECUTORS, get_executor
from xspec.store.workspace import Workspace
from xspec.study import cancel_study, node_states, open_study, run_study, submit_study


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_every_executor_answers_the_protocol_for_a_fresh_plan(name, write_spec, base_spec,
                                                               tmp_path):
    """Called as the CLI calls them (keywords): nothing ran, so every node is pending and
    there is nothing to cancel."""
    executor = get_executor(name)
    assert executor.name == name and executor.batch == (name == "slurm")
    study, workspace = open_study(write_spec(base_spec)), Workspace(tmp_path / "ws")
    states = executor.states(plan=study.plan, workspace=workspace)
    assert set(states) == set(study.plan.nodes)
    assert {state for state, _ in states.values()} == {"pending"}
    assert executor.cancel(plan=study.plan, workspace=workspace) == []


def test_unknown_executor_lists_the_known_ones():
    with pytest.raises(XspecError, match="unknown executor 'pbs'; allowed: debug, local, slurm"):
        get_executor("pbs")


def test_run_and_submit_refuse_the_other_kind(write_spec, base_spec, tmp_path):
    study, workspace = open_study(write_spec(base_spec)), Workspace(tmp_path / "ws")
    with pytest.raises(XspecError, match="`xspec run` runs here"):
        run_study(study, workspace, "slurm")
    with pytest.raises(XspecError, match="executor 'local' runs nodes here"):
        submit_study(study, workspace, "local", {})


def test_states_and_cancel_of_a_study_run_here(write_spec, base_spec, tmp_path):
    study, workspace = open_study(write_spec(base_spec)), Workspace(tmp_path / "ws")
    poison, pretrain = study.plan.of_kind("poison")[0], study.plan.of_kind("pretrain")[0]
    for node in (poison, pretrain):
        workspace.prepare(node)
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    host = os.uname().nodename
    workspace.run_dir(poison).set_status("running", pid=dead.pid, host=host)
    workspace.run_dir(pretrain).set_status("running", pid=alive.pid, host=host)
    states, warning = node_states(study.plan, workspace)
    assert warning is None
    assert states[poison.id][0] == "failed" and "is gone" in states[poison.id][1]
    assert states[pretrain.id] == ("running", "")
    assert cancel_study(study, workspace) == [str(alive.pid)]
    assert alive.wait(timeout=10) == -15
