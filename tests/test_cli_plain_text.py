"""User data (paths, names, error messages) prints as plain text, never as rich markup."""

import pytest
from typer.testing import CliRunner

from xspec.cli import app, main
from xspec.errors import XspecError


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def bracket_dir(tmp_path):
    folder = tmp_path / "runs [" / "red] [bold]" / "[" / "x]"  # .../runs [/red] [bold]/[/x]
    folder.mkdir(parents=True)
    return folder


def test_validate_a_spec_under_a_bracketed_path(bracket_dir, base_spec):
    spec = bracket_dir / "spec.toml"
    spec.write_text(base_spec)
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert str(spec) in result.output.replace("\n", "")


def test_status_with_a_bracketed_workspace_and_error(bracket_dir, base_spec):
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    spec = bracket_dir / "spec.toml"
    spec.write_text(base_spec)
    workspace = Workspace(bracket_dir / "ws [" / "]")
    node = open_study(spec).plan.ordered()[0]
    workspace.prepare(node).set_status("failed", error="loss is nan: got [nan, 1.0] [/red]")
    result = CliRunner().invoke(app, ["status", str(spec), "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    cells = "".join(c for c in result.output if not c.isspace() and c not in "│┃")
    assert "got[nan,1.0][/red]" in cells


def test_error_lines_keep_their_brackets(monkeypatch, capsys):
    def fail():
        raise XspecError("lr: got [nan, 1.0] in /data/[/x]")

    monkeypatch.setattr("xspec.cli.app", lambda standalone_mode: fail())
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert _flat(capsys.readouterr().err) == "error: lr: got [nan, 1.0] in /data/[/x]"


def test_progress_failure_line_is_plain(capsys):
    from rich.console import Console
    from rich.progress import Progress

    from xspec.cli_views import ProgressReporter

    console = Console(force_terminal=False, width=200)

    class Node:
        id, name = "n1", "clean@lr=[1e-4, 1e-3]"

    with Progress(console=console) as progress:
        reporter = ProgressReporter(progress, console)
        reporter.started(Node, 2)
        reporter.finished(Node, "failed", "loss is [nan] [/x] at step 3")
    assert "failed clean@lr=[1e-4, 1e-3]: loss is [nan] [/x] at step 3" in capsys.readouterr().out
