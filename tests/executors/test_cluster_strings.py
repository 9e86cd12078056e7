"""Nothing from a spec's [cluster] table reaches the sbatch script outside its `#SBATCH` line
(issue 19): a newline in a partition would run the next line as shell on the compute node."""

from types import SimpleNamespace

import pytest
import submitit

from xspec.errors import XspecError
from xspec.executors.local import WORKER_PYTHON
from xspec.executors.slurm import slurm_parameters


@pytest.mark.parametrize("options, message", [
    ({"partition": "cpu\ntouch /tmp/x #"}, "slurm option 'partition': control character '\\n'"),
    ({"account": "lab\r"}, "slurm option 'account': control character '\\r'"),
    ({"additional": {"mail-type": "END\ntouch /tmp/x"}},
     "slurm option 'additional' 'mail-type': control character '\\n'"),
    ({"additional": {"x\ntouch /tmp/x #": "1"}},
     "slurm option 'additional' 'x\\ntouch /tmp/x #': not an sbatch option name"),
    ({"additional": {"comment": ["a", "b"]}},
     "slurm option 'additional' 'comment': expected a string or number, got list"),
])
def test_control_characters_and_odd_option_names_are_refused(options, message):
    with pytest.raises(XspecError) as info:
        slurm_parameters(options, SimpleNamespace(kind="pretrain"))
    assert str(info.value).startswith(message)


def test_every_spec_value_stays_on_its_sbatch_line_and_the_worker_ignores_the_cwd(monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    options = {"partition": "gpu; touch /tmp/x", "account": "lab $(id)", "qos": "`id`",
               "additional": {"mail-type": "END", "comment": "a b; c"}}
    executor = submitit.AutoExecutor(folder="/ws/slurm/%j", cluster="slurm",
                                     slurm_python=" ".join(WORKER_PYTHON))
    executor.update_parameters(**slurm_parameters(options, SimpleNamespace(kind="pretrain")))
    script = executor._executor._make_submission_file_text(
        f"{executor._executor.python} -u -m submitit.core._submit X", "uid")
    values = ["gpu; touch /tmp/x", "lab $(id)", "`id`", "a b; c"]
    for line in script.splitlines():
        if any(value in line for value in values):
            assert line.startswith("#SBATCH --"), line
    assert sum(any(v in line for v in values) for line in script.splitlines()) == 4
    assert " -P -u -m submitit.core._submit" in script


def test_submit_without_slurm_is_one_clear_line(write_spec, base_spec, tmp_path, monkeypatch):
    from xspec.executors.slurm import SlurmError
    from xspec.store.workspace import Workspace
    from xspec.study import open_study, submit_study

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    study = open_study(write_spec(base_spec))
    with pytest.raises(SlurmError) as info:
        submit_study(study, Workspace(tmp_path / "ws"), "slurm", {})
    assert str(info.value) == ("xspec submit needs a SLURM login node and this machine has no "
                               "SLURM; `xspec run` runs the study here (no sbatch, srun, squeue "
                               "on PATH)")


def test_validate_refuses_a_newline_in_a_cluster_string(write_spec, base_spec):
    from xspec.spec.load import load_spec

    path = write_spec(base_spec + '\n[cluster.clean]\npartition = "cpu\\ntouch /tmp/x #"\n')
    with pytest.raises(XspecError) as info:
        load_spec(path)
    assert str(info.value) == (f"{path}: cluster.clean.partition: control character '\\n' not "
                               "allowed (a newline would start a new line of the sbatch script)")
