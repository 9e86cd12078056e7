"""The `xspec` command: thin wrappers over `xspec.study`; errors become one red line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from xspec import cli_export
from xspec.cli_views import SafeConsole as Console
from xspec.cli_views import print_notes, styled
from xspec.errors import XspecError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Declarative studies of backdoors in CLIP models.")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Spec = Annotated[Path, typer.Argument(help="The study's TOML spec.", show_default=False)]
WorkspaceOpt = Annotated[Path, typer.Option(
    "--workspace", "-w", envvar="XSPEC_WORKSPACE", help="Where runs, results and reports live.")]
DEFAULT_WORKSPACE = Path("xspec-work")


def follow(command: str, spec: Path, workspace: Path) -> str:
    """A command line to follow a hint with: the same spec and, unless default, workspace."""
    import shlex

    words = ["xspec", command, str(spec)]
    if workspace != DEFAULT_WORKSPACE:
        words += ["-w", str(workspace)]
    return shlex.join(words)


def _workspace(path: Path):
    from xspec.store.workspace import Workspace

    return Workspace(path)


@app.command()
def validate(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Check a spec and report every problem with its key path (the workspace is not read; -w
    is accepted as by every command).

    Example: xspec validate specs/quickstart.toml
    """
    from xspec.study import open_study

    study = open_study(spec)
    console.print(styled("ok", "green", f"{spec}: study {study.plan.study!r}, "
                         f"{len(study.loaded.variants)} variant(s), "
                         f"{len(study.plan.nodes)} node(s)"))
    print_notes(console, study.plan)


@app.command()
def plan(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable plan.")] = False,
         every: Annotated[bool, typer.Option("--all", help="Every node and its lineage.")] = False,
         gpu: Annotated[str, typer.Option(help="GPU class for the compute estimate.")] = "A100",
         ) -> None:
    """Compile a spec and show its DAG of runs grouped by kind: what varies, the state, and
    the compute it needs (GPU-hours on --gpu, or CPU-minutes for CPU specs).

    Example: xspec plan specs/table2.toml --gpu A100
    """
    from xspec.cli_plan import overview_json, pack_summary, plan_overview
    from xspec.cli_views import plan_json, plan_table
    from xspec.compiler.estimate import estimate
    from xspec.study import open_study

    study, ws = open_study(spec), _workspace(workspace)
    cost = estimate(study.plan, gpu, study.spec.run.device, study.spec.run.threads)
    pack = study.spec.run.pack
    if as_json:
        print(json.dumps({**plan_json(study.plan), **overview_json(
            study.plan, cost, pack_summary(study.plan, ws, pack))}, indent=2))
    elif every:
        plan_table(console, study.plan, ws)
    else:
        plan_overview(console, study.plan, ws, cost, pack)


@app.command()
def run(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
        executor: Annotated[str, typer.Option(help="local or debug (in-process).")] = "local",
        ) -> None:
    """Run every pending node here, ingest the results and write the HTML report.

    Example: xspec run specs/quickstart.toml
    """
    from xspec.cli_views import run_with_progress

    from xspec.executors import get_executor

    if get_executor(executor).batch:
        raise XspecError(f"`xspec run` runs here (local or debug); send a plan to {executor} "
                         f"with `{follow('submit', spec, workspace)}`")
    outcome, report = run_with_progress(console, spec, _workspace(workspace), executor)
    if report:
        console.print(styled("report:", "", str(report)))
    if outcome.failed:
        console.print(f"failed nodes, their errors and logs: {follow('status', spec, workspace)}",
                      markup=False)
        raise typer.Exit(1)


def _opt(help_text: str, kind=str):
    return Annotated[Optional[kind], typer.Option(help=help_text, show_default=False)]


@app.command()
def submit(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
           executor: Annotated[str, typer.Option(help="Batch system: slurm.")] = "slurm",
           partition: _opt("SLURM partition.") = None,
           gpus_per_node: _opt("GPUs per training job (one DDP task each).", int) = None,
           nodes: _opt("Machines per training job; DDP spans all their GPUs.", int) = None,
           cpus_per_task: _opt("CPUs (and torch threads) per task; default 1.", int) = None,
           mem_gb: _opt("Memory per job in GB.", float) = None,
           time: _opt("Time limit per job, e.g. 24:00:00; past it a job requeues and "
                      "resumes.") = None,
           array_parallelism: _opt("At most K tasks of a job array at once.", int) = None,
           account: _opt("SLURM account.") = None,
           qos: _opt("SLURM quality of service.") = None,
           snapshot: Annotated[bool, typer.Option(
               help="Jobs run a copy of xspec and the plugins taken now (workspace/code/), "
                    "not the code installed when they start.")] = True) -> None:
    """Submit every pending node to SLURM through submitit and return at once; re-submitting
    skips nodes that are done, queued or running, and retries failed ones. Flags override
    the spec's [cluster] table.

    Example: xspec submit specs/table2.toml --partition gpu --gpus-per-node 1 --time 24:00:00
    (add --nodes 4 --gpus-per-node 8 to pre-train on 32 GPUs of 4 machines)
    """
    from xspec.study import open_study, submit_study

    flags = dict(partition=partition, gpus_per_node=gpus_per_node, nodes=nodes,
                 cpus_per_task=cpus_per_task,
                 mem_gb=mem_gb, time=time, array_parallelism=array_parallelism,
                 account=account, qos=qos)
    study = open_study(spec)
    jobs = submit_study(study, _workspace(workspace), executor, flags, snapshot)
    for node, job_id in jobs:
        console.print(f"{job_id:>12}  {node.name}", markup=False)
    console.print(f"submitted {len(jobs)} of {len(study.plan.nodes)} node(s); "
                  f"follow with: {follow('status', spec, workspace)}", markup=False)


@app.command()
def cancel(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Cancel the study's SLURM jobs that are queued or running (or, for a study run here, stop
    its node processes); finished runs are kept and `xspec submit` / `xspec run` resume the rest.

    Example: xspec cancel specs/table2.toml
    """
    from xspec.study import cancel_study, open_study

    ids = cancel_study(open_study(spec), _workspace(workspace))
    console.print(f"cancelled {len(ids)} job(s)" + (f": {' '.join(ids)}" if ids else ""),
                  markup=False)


@app.command()
def status(spec: Annotated[Optional[Path], typer.Argument(
               help="The study's TOML spec; without it, every run folder of the workspace.",
               show_default=False)] = None,
           workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Show each node's state (pending, queued, running, done, failed with the reason and log
    path), from the run folders (node.json, status.json) and, for submitted nodes, SLURM.
    Without a spec, every run folder of the workspace, as its node.json says (nothing compiled).

    Example: xspec status specs/quickstart.toml   (or: xspec status -w xspec-work)
    """
    from xspec.cli_views import status_table
    from xspec.study import status_view

    ws = _workspace(workspace)
    view = status_view(spec, ws)
    if view.warning:
        err.print(styled("warning:", "yellow", f"{view.warning}; showing the workspace only"))
    status_table(console, view.plan, ws, view.states, view.notes)


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
    console.print(styled("report:", "", str(path)))


@app.command()
def schema(plugin: Annotated[Optional[list[str]], typer.Option(
        help="Also the fields of this plugin module (a module name: a file in the current "
             "folder or a module on sys.path; or a .py file's path); repeatable. Installed xspec.plugins entry points always count.",
        show_default=False)] = None) -> None:
    """Print the JSON Schema of a spec (sweeps, zip tables, [[variants]] and ${VAR} included),
    for editor completion; README says how to wire it into an editor.

    Example: xspec schema --plugin my_defence > xspec.schema.json
    """
    from xspec.extend.plugins import load_plugins
    from xspec.spec.jsonschema import spec_schema

    load_plugins(plugin or [], Path.cwd(), key="--plugin")
    print(json.dumps(spec_schema(), indent=2))


app.command("export")(cli_export.export)

data_app = typer.Typer(no_args_is_help=True,
                       help="Check datasets before running; pack pairs as WebDataset shards.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(spec: Spec, workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Scan a study's training, cleaning and evaluation sets; exit 1 on what would break a run
    (the workspace is not read; -w is accepted as by every command).

    Example: xspec data check specs/table2.toml
    """
    from xspec.cli_views import print_findings
    from xspec.runtime.datacheck import check_study
    from xspec.spec.load import load_spec

    if not print_findings(console, check_study(load_spec(spec).first)):
        raise typer.Exit(1)


@data_app.command("pack")
def data_pack(
    out: Annotated[Path, typer.Argument(help="Folder to write the shards into.")],
    csv: Annotated[Optional[Path], typer.Option(help="A CSV of image,caption pairs.")] = None,
    fashion_mnist: Annotated[Optional[str], typer.Option(
        help="Fashion-MNIST split to pack instead: train or test.")] = None,
    size: Annotated[Optional[int], typer.Option(help="Pack only the first N pairs.")] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 1000,
    image_key: str = "image", caption_key: str = "caption",
) -> None:
    """Write CSV or Fashion-MNIST pairs as WebDataset shards (img2dataset layout) and print the
    `data.train` line that reads them.

    Example: xspec data pack shards/ --fashion-mnist train --size 8000
    """
    from xspec.runtime.pack import pack

    if (csv is None) == (fashion_mnist is None):
        raise XspecError("data pack: give exactly one of --csv PATH or --fashion-mnist SPLIT")
    cfg = ({"format": "csv", "path": str(csv), "image_key": image_key, "caption_key": caption_key}
           if csv else {"format": "fashion_mnist", "split": fashion_mnist})
    done = pack({**cfg, "size": size}, out, shard_size)
    console.print(styled("packed:", "", f"{done.samples} pairs in {done.shards} shard(s), "
                         f"{done.skipped} skipped; use data.train = {{ format = \"webdataset\", "
                         f"path = \"{done.pattern}\" }}"), soft_wrap=True)


def main() -> None:
    debug = "--debug" in sys.argv or os.environ.get("XSPEC_DEBUG")
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code (130: Ctrl-C)
    except KeyboardInterrupt:
        code = 130
    except XspecError as exc:
        for line in str(exc).splitlines():
            err.print(styled("error:", "red", line), soft_wrap=True)
        if debug:
            raise
        sys.exit(1)
    except typer.Exit as exc:
        code = exc.exit_code
    except Exception as exc:  # click's usage errors, then the unexpected
        import click

        from xspec.cli_errors import crash_line

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            code = 130
        elif debug:
            raise
        else:
            err.print(styled("error:", "red", crash_line(exc)), soft_wrap=True)
            sys.exit(1)
    if code == 130:
        from xspec.cli_errors import interrupted_line

        label, rest = interrupted_line().split(": ", 1)
        err.print(styled(f"{label}:", "red", rest), soft_wrap=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
