"""The library behind the CLI: plan, run, ingest and report a study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xspec.compiler.plan import Plan, compile_spec
from xspec.spec.load import LoadedSpec, load_spec
from xspec.store.workspace import Workspace


@dataclass
class Study:
    loaded: LoadedSpec
    plan: Plan

    @property
    def spec(self):
        return self.loaded.first

    def settings(self) -> dict:
        run = self.spec.run
        return {"device": run.device, "threads": run.threads, "workers": run.workers,
                "concurrency": run.concurrency, "pack": run.pack,
                "eval_batch_size": self.spec.evaluate.batch_size,
                "keep_checkpoints": run.keep_checkpoints,
                "on_bad_image": self.spec.data.on_bad_image,
                "max_bad_fraction": self.spec.data.max_bad_fraction,
                "plugins": list(self.loaded.plugins)}


def open_study(spec_path: str | Path) -> Study:
    loaded = load_spec(spec_path)
    return Study(loaded, compile_spec(loaded))


def run_study(study: Study, workspace: Workspace, executor: str = "local", reporter=None):
    from xspec.executors import get_executor

    return get_executor(executor).execute(study.plan, workspace, study.settings(), reporter)


def ingest_study(study: Study, workspace: Workspace) -> int:
    from xspec.store.db import ingest

    return ingest(workspace, study.plan)


def report_study(study: Study, workspace: Workspace) -> Path:
    from xspec.reports.html import build_report

    ingest_study(study, workspace)
    out = workspace.report_dir(study.plan.study)
    report = study.spec.report
    return build_report(workspace.db_path, study.plan.study, out,
                        asr_threshold=report.asr_threshold, tables=report.tables,
                        plots=report.plots)


def compare_studies(studies: list[Study], workspace: Workspace) -> Path:
    from xspec.reports.html import build_comparison

    for study in studies:
        ingest_study(study, workspace)
    names = [study.plan.study for study in studies]
    out = workspace.root / "reports" / ("compare-" + "-".join(names))[:120]
    return build_comparison(workspace.db_path, names, out,
                            asr_threshold=studies[0].spec.report.asr_threshold)


def submit_study(study: Study, workspace: Workspace, executor: str, flags: dict) -> list:
    """Send the pending nodes to a batch system; returns [(node, job id)]."""
    from xspec.errors import XspecError
    from xspec.executors.slurm import SlurmExecutor

    if executor != "slurm":
        raise XspecError(f"unknown batch executor {executor!r}; allowed: slurm "
                         "(`xspec run` runs here)")
    options = study.spec.cluster.options(flags)
    return SlurmExecutor().submit(study.plan, workspace, study.settings(), options)


def node_states(study: Study, workspace: Workspace):
    """({node id: (state, detail)} or None, warning): SLURM's view merged with the workspace."""
    from xspec.executors.slurm import SlurmError, SlurmExecutor

    try:
        return SlurmExecutor().states(study.plan, workspace), None
    except SlurmError as exc:
        return None, str(exc)
