"""Run every pending node in this process, in order: debuggable, and what tests use."""

from __future__ import annotations

from xspec.errors import ExecutionError
from xspec.executors.base import Outcome, SilentReporter, prepare, ready, total_steps
from xspec.store.workspace import Workspace, node_record


class DebugExecutor:
    name = "debug"

    def execute(self, plan, workspace: Workspace, settings: dict, reporter=None) -> Outcome:
        from xspec.runtime.runner import execute_node

        reporter = reporter or SilentReporter()
        outcome = Outcome(skipped=[n.id for n in plan.ordered()])
        for node in prepare(workspace, plan):
            outcome.skipped.remove(node.id)
            if ready(node, plan, workspace, outcome.doomed) != "ready":
                outcome.blocked.append(node.id)
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
