"""Run every pending node in this process, in order: debuggable, and what tests use."""

from __future__ import annotations

from xspec.errors import ExecutionError
from xspec.executors.base import Outcome, SilentReporter, pack_jobs, prepare, ready, total_steps
from xspec.store.workspace import Workspace, node_record


class DebugExecutor:
    name = "debug"

    def execute(self, plan, workspace: Workspace, settings: dict, reporter=None) -> Outcome:
        from xspec.runtime.runner import execute_node

        reporter = reporter or SilentReporter()
        outcome = Outcome(skipped=[n.id for n in plan.ordered()])
        pending = prepare(workspace, plan)
        job_of = pack_jobs(pending, settings)
        for node in pending:
            if node.id in outcome.ran or node.id in outcome.failed:
                continue  # ran in a pack with an earlier sibling
            outcome.skipped.remove(node.id)
            if ready(node, plan, workspace, outcome.doomed) != "ready":
                outcome.blocked.append(node.id)
                continue
            job = [n for n in job_of[node.id]
                   if n.id not in outcome.ran and ready(n, plan, workspace, outcome.doomed)
                   == "ready"]
            if len(job) > 1:
                self._run_pack(job, workspace, settings, reporter, outcome)
                continue
            reporter.started(node, total_steps(node))
            try:
                execute_node(node_record(node), str(workspace.root), settings,
                             progress=lambda state, n=node: reporter.advanced(n, vars(state)))
            except ExecutionError as exc:
                outcome.failed[node.id] = str(exc)
                reporter.finished(node, "failed", str(exc))
                continue
            outcome.ran.append(node.id)
            reporter.finished(node, "done", None)
        return outcome

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
