"""The `xspec` command: thin wrappers over `xspec.study`; errors become one red line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from xspec.errors import XspecError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Declarative studies of backdoors in CLIP models.")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Spec = Annotated[Path, typer.Argument(help="The study's TOML spec.", show_default=False)]
WorkspaceOpt = Annotated[Path, typer.Option(
    "--workspace", "-w", envvar="XSPEC_WORKSPACE", help="Where runs, results and reports live.")]
DEFAULT_WORKSPACE = Path("xspec-work")


def _workspace(path: Path):
    from xspec.store.workspace import Workspace

    return Workspace(path)


@app.command()
def validate(spec: Spec) -> None:
    """Check a spec and report every problem with its key path.

    Example: xspec validate specs/quickstart.toml
    """
    from xspec.study import open_study

    study = open_study(spec)
    console.print(f"[green]ok[/green] {spec}: study {study.plan.study!r}, "
                  f"{len(study.loaded.variants)} variant(s), {len(study.plan.nodes)} node(s)")


@app.command()
def plan(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable plan.")] = False,
         ) -> None:
    """Compile a spec and show its DAG of runs, with their content ids and state.

    Example: xspec plan specs/table2.toml --json
    """
    from xspec.cli_views import plan_json, plan_table
    from xspec.study import open_study

    study = open_study(spec)
    if as_json:
        print(json.dumps(plan_json(study.plan), indent=2))
    else:
        plan_table(console, study.plan, _workspace(workspace))


@app.command()
def run(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
        executor: Annotated[str, typer.Option(help="local or debug (in-process).")] = "local",
        ) -> None:
    """Run every pending node here, ingest the results and write the HTML report.

    Example: xspec run specs/quickstart.toml
    """
    from xspec.cli_views import run_with_progress

    outcome, report = run_with_progress(console, spec, _workspace(workspace), executor)
    if report:
        console.print(f"report: [bold]{report}[/bold]")
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
def status(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Show each node's state (pending, running, done, failed and why).

    Example: xspec status specs/quickstart.toml
    """
    from xspec.cli_views import status_table
    from xspec.study import open_study

    status_table(console, open_study(spec).plan, _workspace(workspace))


@app.command()
def report(specs: Annotated[list[Path], typer.Argument(help="One or more study specs.")],
           workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Ingest finished runs into DuckDB and write the HTML report; several specs get one
    comparison report (works while jobs still run, on what has finished).

    Example: xspec report specs/quickstart.toml
    """
    from xspec.study import compare_studies, open_study, report_study

    studies, ws = [open_study(spec) for spec in specs], _workspace(workspace)
    path = report_study(studies[0], ws) if len(studies) == 1 else compare_studies(studies, ws)
    console.print(f"report: [bold]{path}[/bold]")


@app.command()
def schema() -> None:
    """Print the JSON Schema of a spec, for editor completion.

    Example: xspec schema > xspec.schema.json
    """
    from xspec.spec.schema import Spec as SpecModel

    print(json.dumps(SpecModel.model_json_schema(by_alias=True), indent=2))


data_app = typer.Typer(no_args_is_help=True, help="Check datasets before running.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(spec: Spec) -> None:
    """Scan a study's training, cleaning and evaluation sets; exit 1 on what would break a run.

    Example: xspec data check specs/table2.toml
    """
    from xspec.cli_views import print_findings
    from xspec.runtime.datacheck import check_study
    from xspec.spec.load import load_spec

    if not print_findings(console, check_study(load_spec(spec).first)):
        raise typer.Exit(1)


def main() -> None:
    debug = "--debug" in sys.argv or os.environ.get("XSPEC_DEBUG")
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code in this mode
        sys.exit(code if isinstance(code, int) else 0)
    except XspecError as exc:
        for line in str(exc).splitlines():
            err.print(f"[red]error:[/red] {line}", soft_wrap=True)
        if debug:
            raise
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]: finished runs are kept; `xspec run` resumes the rest")
        sys.exit(130)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
