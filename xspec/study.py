"""The library behind the CLI: plan, run, ingest and report a study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xspec.compiler.plan import Plan, compile_spec
from xspec.errors import XspecError
from xspec.spec.load import LoadedSpec, load_spec
from xspec.spec.tables.settings import RunSettings
from xspec.store.workspace import Workspace


@dataclass
class Study:
    loaded: LoadedSpec
    plan: Plan

    @property
    def spec(self):
        return self.loaded.first

    def settings(self) -> RunSettings:
        """How the study's nodes run (`[run]`, evaluation batch, bad-image policy, plugins)."""
        return RunSettings(**self.spec.run.model_dump(),
                           eval_batch_size=self.spec.evaluate.batch_size,
                           on_bad_image=self.spec.data.on_bad_image,
                           max_bad_fraction=self.spec.data.max_bad_fraction,
                           plugins=list(self.loaded.plugins))


def open_study(spec_path: str | Path) -> Study:
    from xspec.extend.plugins import TORCH_AT_IMPORT, torch_note
    from xspec.spec.notes import study_notes

    loaded = load_spec(spec_path)
    plan = compile_spec(loaded)
    plan.study_notes = study_notes(loaded.raw)
    for plugin in loaded.plugins:
        if plugin["name"] in TORCH_AT_IMPORT and torch_note(plugin["name"]) not in plan.notes:
            plan.notes.append(torch_note(plugin["name"]))
    return Study(loaded, plan)


def _existing(workspace: Workspace) -> Workspace:
    """The workspace, which must exist: a report reads what runs wrote there."""
    if not Path(workspace.root).is_dir():
        raise XspecError(f"{workspace.root}: no such workspace; run the study first (xspec run "
                         f"SPEC -w {workspace.root}) or name the workspace it ran in with -w")
    return workspace


def run_study(study: Study, workspace: Workspace, executor: str = "local", reporter=None):
    """Run the pending nodes on this machine (`local` or `debug`) and return the Outcome."""
    from xspec.executors import get_executor

    chosen = get_executor(executor)
    if chosen.batch:
        raise XspecError(f"`xspec run` runs here (local or debug); `xspec submit` sends a plan "
                         f"to {executor}")
    return chosen.submit(study.plan, workspace, study.settings(), reporter=reporter)


def ingest_study(study: Study, workspace: Workspace) -> int:
    from xspec.store.db import ingest

    return ingest(workspace, study.plan)


def report_study(study: Study, workspace: Workspace) -> Path:
    from xspec.reports.html import build_report

    _existing(workspace)
    ingest_study(study, workspace)
    out = workspace.report_dir(study.plan.study)
    report = study.spec.report
    return build_report(workspace.db_path, study.plan.study, out,
                        asr_threshold=report.asr_threshold, tables=report.tables,
                        plots=report.plots)


def compare_studies(studies: list[Study], workspace: Workspace) -> Path:
    from xspec.reports.html import build_comparison

    _existing(workspace)
    for study in studies:
        ingest_study(study, workspace)
    names = [study.plan.study for study in studies]
    out = workspace.root / "reports" / ("compare-" + "-".join(names))[:120]
    return build_comparison(workspace.db_path, names, out,
                            asr_threshold=studies[0].spec.report.asr_threshold)


def submit_study(study: Study, workspace: Workspace, executor: str, flags: dict,
                 snapshot: bool = True) -> list:
    """Send the pending nodes to a batch system; returns [(node, job id)]. With `snapshot`,
    the jobs run the code as it is now (`xspec.executors.snapshot`), not as it is when they
    start."""
    from xspec.executors import get_executor
    from xspec.executors.local import WORKER_PYTHON
    from xspec.executors.snapshot import freeze, frozen_settings

    chosen = get_executor(executor)
    if not chosen.batch:
        raise XspecError(f"executor {executor!r} runs nodes here: use `xspec run --executor "
                         f"{executor}`; `xspec submit` is for batch systems (slurm)")
    options = study.spec.cluster.options(flags)
    settings = study.settings()
    if snapshot:
        frozen = freeze(workspace.root, settings.plugins)
        settings = frozen_settings(settings, frozen, WORKER_PYTHON)
    return chosen.submit(study.plan, workspace, settings, options).jobs


def _executor_of(plan: Plan, workspace: Workspace):
    """The executor that last took these nodes: slurm if any was submitted there."""
    from xspec.executors import get_executor
    from xspec.executors.slurm import job_file

    submitted = any(job_file(workspace.run_dir(n)).exists() for n in plan.ordered())
    return get_executor("slurm" if submitted else "local")


def node_states(plan: Plan, workspace: Workspace):
    """({node id: (state, detail)} or None, warning): the executor's view merged with the
    workspace (SLURM's queue for submitted plans)."""
    try:
        return _executor_of(plan, workspace).states(plan, workspace), None
    except XspecError as exc:
        return None, str(exc)


@dataclass
class StatusView:
    """What `xspec status` shows: the nodes, their states (None: status.json alone), a note per
    node about its run folder's node.json, and a warning (SLURM unreachable)."""

    plan: Plan
    states: dict | None
    notes: dict[str, str]
    warning: str | None


def status_view(spec_path: str | Path | None, workspace: Workspace) -> StatusView:
    """A study's nodes (compiled from its spec: which nodes are its) with what their run
    folders say; without a spec, every run folder of the workspace as its node.json says,
    compiling nothing (`xspec.store.recorded.workspace_plan`)."""
    from xspec.store.recorded import folder_notes, workspace_plan

    if spec_path is None:
        plan, notes = workspace_plan(_existing(workspace))
    else:
        plan = open_study(spec_path).plan
        notes = folder_notes(workspace, plan)
    states, warning = node_states(plan, workspace)
    return StatusView(plan, states, notes, warning)


def cancel_study(study: Study, workspace: Workspace) -> list[str]:
    """Stop the study's queued and running nodes (SLURM jobs, or node processes here)."""
    return _executor_of(study.plan, workspace).cancel(study.plan, workspace)
