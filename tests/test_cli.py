"""The CLI: every command has help with an example; errors are one line, exit 1, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xspec.cli import app

COMMANDS = ["validate", "plan", "run", "submit", "status", "cancel", "report", "schema", "export"]
SUBCOMMANDS = [["data", "check"]]


@pytest.mark.parametrize("command", [[c] for c in COMMANDS] + SUBCOMMANDS)
def test_help_has_an_example(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: xspec" in result.output


def test_registered_commands_are_all_tested():
    assert sorted(c.name or c.callback.__name__ for c in app.registered_commands) == sorted(COMMANDS)


def test_bad_spec_is_one_red_line_exit_1_no_traceback(write_spec, base_spec):
    path = write_spec(base_spec.replace("epochs = 2\n", "epochs = 'two'\n", 1))
    proc = subprocess.run([sys.executable, "-m", "xspec.cli", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: pretrain.epochs: input should be a valid integer, unable to parse "
        "string as an integer (got 'two')"]


def test_validate_ok(write_spec, base_spec):
    result = CliRunner().invoke(app, ["validate", str(write_spec(base_spec))])
    assert result.exit_code == 0
    assert "2 variant(s), 5 node(s)" in " ".join(result.output.split())


def test_hints_carry_the_spec_and_a_workspace_other_than_the_default(write_spec, base_spec,
                                                                      tmp_path):
    from xspec.cli import follow

    assert follow("status", Path("s.toml"), Path("xspec-work")) == "xspec status s.toml"
    assert follow("status", Path("s.toml"), Path("my ws")) == "xspec status s.toml -w 'my ws'"
    spec = write_spec(base_spec)
    result = CliRunner().invoke(app, ["run", str(spec), "-w", str(tmp_path / "ws"),
                                      "--executor", "slurm"])
    assert result.exit_code == 1
    assert f"xspec submit {spec} -w {tmp_path / 'ws'}" in str(result.exception)


def test_status_table_fits_100_columns_with_log_paths_relative_to_the_workspace(
        write_spec, base_spec, tmp_path):
    from rich.console import Console

    from xspec.cli_views import status_table
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    study = open_study(write_spec(base_spec))
    workspace = Workspace(tmp_path / "a-workspace-with-a-long-name" / "xspec-work")
    failed = study.plan.of_kind("clean")[0]
    workspace.run_dir(failed).set_status("failed", error="RuntimeError: CUDA out of memory "
                                         "while training epoch 3 of 20")
    console = Console(width=100, record=True)
    status_table(console, study.plan, workspace)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(f"log: runs/{failed.run_name}/log.txt" in line for line in lines)
    assert not any("log: /" in line for line in lines)


def test_export_needs_a_policy_or_a_node(write_spec, base_spec, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xspec.cli", "export", str(write_spec(base_spec)),
                           "--out", str(tmp_path / "out"), "-w", str(tmp_path / "ws")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: name either --policy or --node"]
