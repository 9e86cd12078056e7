"""One check of SLURM options (`ClusterOptions`): `xspec validate` and `xspec submit` refuse a
bad value with the same reason, and accept the same good ones (before, `signal_delay_s` was
accepted by submit's own type table but refused in a spec, and a time limit like "tomorrow"
passed `validate` and failed only at submit)."""

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.errors import XspecError
from xspec.executors.slurm import slurm_parameters
from xspec.spec.load import load_spec

REASON = "slurm time 'tomorrow': expected MM, HH:MM:SS or D-HH:MM:SS"


def _said(result) -> str:
    """What `xspec` prints after "error:" (xspec.cli.main prints an XspecError's lines)."""
    assert isinstance(result.exception, XspecError), result.output
    return str(result.exception)


@pytest.mark.parametrize("table, reason", [
    ('time = "tomorrow"', REASON),
    ("time = 0", "slurm time 0: must be at least one minute"),
    ("signal_delay_s = 0", "input should be greater than 0 (got 0)"),
])
def test_validate_and_submit_refuse_a_bad_cluster_value_with_one_reason(write_spec, base_spec,
                                                                        tmp_path, table, reason):
    path = write_spec(base_spec + f"\n[cluster]\n{table}\n")
    key = table.split(" =")[0]
    validated = CliRunner().invoke(app, ["validate", str(path)])
    submitted = CliRunner().invoke(app, ["submit", str(path), "-w", str(tmp_path / "ws")])
    assert validated.exit_code != 0 and submitted.exit_code != 0
    expected = f"{path}: cluster.{key}: {reason}"
    assert expected in _said(validated) and expected in _said(submitted)


def test_a_bad_submit_flag_is_refused_with_the_spec_check_reason(write_spec, base_spec,
                                                                 tmp_path):
    path = write_spec(base_spec)
    flagged = CliRunner().invoke(app, ["submit", str(path), "-w", str(tmp_path / "ws"),
                                       "--time", "tomorrow"])
    assert flagged.exit_code != 0
    assert f"slurm option 'time': {REASON}" in _said(flagged)


def test_signal_delay_set_in_a_spec_reaches_the_job_parameters(write_spec, base_spec):
    loaded = load_spec(write_spec(base_spec + "\n[cluster]\nsignal_delay_s = 120\n"
                                  'time = "1:00:00"\n'))
    options = loaded.first.cluster.options({})
    params = slurm_parameters(options, SimpleNamespace(kind="clean"))
    assert (params["slurm_signal_delay_s"], params["timeout_min"]) == (120, 60)
