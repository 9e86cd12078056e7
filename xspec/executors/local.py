"""Run pending nodes as child processes on this machine, in dependency order, at most
`concurrency` at a time. A child that dies (kill -9, out of memory) fails only its node."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from xspec.executors.base import Outcome, SilentReporter, prepare, ready, total_steps
from xspec.store.workspace import Workspace

POLL_SECONDS = 0.5


class LocalExecutor:
    name = "local"

    def execute(self, plan, workspace: Workspace, settings: dict, reporter=None) -> Outcome:
        reporter = reporter or SilentReporter()
        waiting = prepare(workspace, plan)
        outcome = Outcome(skipped=[n.id for n in plan.ordered() if n not in waiting])
        running: dict[str, tuple] = {}
        limit = max(1, int(settings.get("concurrency", 1)))
        while waiting or running:
            for node in list(waiting):
                verdict = ready(node, plan, workspace, outcome.doomed)
                if verdict == "blocked":
                    waiting.remove(node)
                    outcome.blocked.append(node.id)
                elif verdict == "ready" and workspace.run_dir(node).alive_elsewhere():
                    continue  # a worker from an earlier, killed `xspec run` is still at it
                elif verdict == "ready" and len(running) < limit:
                    waiting.remove(node)
                    running[node.id] = (node, self._start(workspace, node, settings))
                    reporter.started(node, total_steps(node))
            if not running and waiting and all(
                ready(n, plan, workspace, outcome.doomed) == "wait" for n in waiting
            ):
                break  # nothing can make progress; should not happen in a valid DAG
            time.sleep(POLL_SECONDS)
            for node_id, (node, proc) in list(running.items()):
                self._poll(workspace, node, proc, reporter, outcome, running)
        return outcome

    @staticmethod
    def _start(workspace: Workspace, node, settings: dict) -> subprocess.Popen:
        run = workspace.run_dir(node)
        (run.path / "progress.json").unlink(missing_ok=True)
        # Not "failed" from an earlier try while the worker starts: dependents must wait.
        run.set_status("queued", error=None)
        return subprocess.Popen(
            [sys.executable, "-m", "xspec.runtime.worker", str(run.path), json.dumps(settings)],
            stdout=subprocess.DEVNULL, stderr=open(run.path / "stderr.txt", "ab"),
        )

    @staticmethod
    def _poll(workspace, node, proc, reporter, outcome, running) -> None:
        run = workspace.run_dir(node)
        try:
            reporter.advanced(node, json.loads((run.path / "progress.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        code = proc.poll()
        if code is None:
            return
        del running[node.id]
        status = run.status()
        if code == 0 and status.get("state") == "done":
            outcome.ran.append(node.id)
            reporter.finished(node, "done", None)
            return
        reason = status.get("error") if status.get("state") == "failed" else (
            f"worker exited with code {code} (killed?); see {run.path / 'stderr.txt'}")
        if status.get("state") != "failed":
            run.set_status("failed", error=reason)
        outcome.failed[node.id] = reason
        reporter.finished(node, "failed", reason)
