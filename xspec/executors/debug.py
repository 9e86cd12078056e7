"""Run every pending node in this process, in order: debuggable, and what tests use. A node
another process has claimed is waited for (`xspec.store.locks`)."""

from __future__ import annotations

from xspec.errors import ExecutionError
from xspec.executors.base import (Outcome, RunsHere, SilentReporter, claim_or_wait, pack_jobs, pending,
                                  ready, total_steps)
from xspec.store.workspace import Workspace, node_record
from xspec.spec.tables.settings import RunSettings


class DebugExecutor(RunsHere):
    name = "debug"

    def submit(self, plan, workspace: Workspace, settings: RunSettings | dict,
               options: dict | None = None, reporter=None) -> Outcome:
        from xspec.runtime.node import process_settings_kept

        reporter, settings = reporter or SilentReporter(), RunSettings.of(settings)
        with process_settings_kept():
            return self._submit(plan, workspace, settings, reporter)

    def _submit(self, plan, workspace: Workspace, settings: RunSettings, reporter) -> Outcome:
        outcome = Outcome(skipped=[n.id for n in plan.ordered()])
        todo = pending(workspace, plan)
        job_of = pack_jobs(todo, settings)
        told: set[str] = set()
        for node in todo:
            if node.id in outcome.ran or node.id in outcome.failed:
                continue  # ran in a pack with an earlier sibling
            outcome.skipped.remove(node.id)
            if ready(node, plan, workspace, outcome.doomed) != "ready":
                outcome.blocked.append(node.id)
                continue
            job = [n for n in job_of[node.id]
                   if n.id not in outcome.ran and ready(n, plan, workspace, outcome.doomed)
                   == "ready"]
            claims = {n.id: claim_or_wait(workspace, n, reporter, told) for n in job}
            for n in job:
                if claims[n.id] is None and n.id not in outcome.skipped:
                    outcome.skipped.append(n.id)  # another process finished it meanwhile
            job = [n for n in job if claims[n.id] is not None]
            try:
                if len(job) > 1:
                    self._run_pack(job, workspace, settings, reporter, outcome)
                elif job:
                    self._run_one(job[0], workspace, settings, reporter, outcome)
            finally:
                for held in claims.values():
                    if held is not None:
                        held.release()
        return outcome

    @staticmethod
    def _run_one(node, workspace, settings, reporter, outcome) -> None:
        from xspec.runtime.node import execute_node

        reporter.started(node, total_steps(node))
        try:
            execute_node(node_record(node), str(workspace.root), settings,
                         progress=lambda state, n=node: reporter.advanced(n, vars(state)))
        except ExecutionError as exc:
            outcome.failed[node.id] = str(exc)
            reporter.finished(node, "failed", str(exc))
            return
        outcome.ran.append(node.id)
        reporter.finished(node, "done", None)

    @staticmethod
    def _run_pack(job, workspace, settings, reporter, outcome) -> None:
        from xspec.runtime.packed import run_pack

        for node in job:
            if node.id in outcome.skipped:
                outcome.skipped.remove(node.id)
            reporter.started(node, total_steps(node))
        progress = {n.id: (lambda state, n=n: reporter.advanced(n, vars(state))) for n in job}
        result = run_pack([node_record(n) for n in job], str(workspace.root), settings, progress)
        for node in job:
            reason = result[node.id]
            if reason is None:
                outcome.ran.append(node.id)
            else:
                outcome.failed[node.id] = f"{node.short}: {reason}"
            reporter.finished(node, "done" if reason is None else "failed", reason)
