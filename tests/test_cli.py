"""The CLI: every command has help with an example; errors are one line, exit 1, no traceback."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from xspec.cli import app

COMMANDS = ["validate", "plan", "run", "submit", "status", "cancel", "report", "schema"]
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
