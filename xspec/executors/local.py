"""Run pending nodes as child processes on this machine, in dependency order, at most
`concurrency` at a time. A child that dies (kill -9, out of memory) fails only its node."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from xspec.executors.base import (Outcome, SilentReporter, pack_jobs, prepare, ready,
                                  total_steps)
from xspec.store.workspace import Workspace

POLL_SECONDS = 0.5


class LocalExecutor:
    name = "local"

    def execute(self, plan, workspace: Workspace, settings: dict, reporter=None) -> Outcome:
        reporter = reporter or SilentReporter()
        waiting = prepare(workspace, plan)
        job_of = pack_jobs(waiting, settings)
        outcome = Outcome(skipped=[n.id for n in plan.ordered() if n not in waiting])
        running: dict[str, tuple] = {}  # node id -> (node, process, its stderr file)
        limit = max(1, int(settings.get("concurrency", 1)))
        while waiting or running:
            for node in list(waiting):
                if node not in waiting:
                    continue  # started with a packed sibling in this pass
                verdict = ready(node, plan, workspace, outcome.doomed)
                if verdict == "blocked":
                    waiting.remove(node)
                    outcome.blocked.append(node.id)
                elif verdict == "ready" and workspace.run_dir(node).alive_elsewhere():
                    continue  # a worker from an earlier, killed `xspec run` is still at it
                elif verdict == "ready" and len({id(p) for _, p, _ in running.values()}) < limit:
                    job = [n for n in job_of[node.id] if n in waiting
                           and ready(n, plan, workspace, outcome.doomed) == "ready"
                           and not workspace.run_dir(n).alive_elsewhere()]
                    proc, stderr = self._start(workspace, job, settings)
                    for member in job:
                        waiting.remove(member)
                        running[member.id] = (member, proc, stderr)
                        reporter.started(member, total_steps(member))
            if not running and waiting and all(
                ready(n, plan, workspace, outcome.doomed) == "wait" for n in waiting
            ):
                break  # nothing can make progress; should not happen in a valid DAG
            time.sleep(POLL_SECONDS)
            for node_id, (node, proc, stderr) in list(running.items()):
                self._poll(workspace, node, proc, stderr, reporter, outcome, running)
        return outcome

    @staticmethod
    def _start(workspace: Workspace, job: list, settings: dict):
        """One worker process for the job's node, or one packed process for its siblings."""
        runs = [workspace.run_dir(node) for node in job]
        for run in runs:
            (run.path / "progress.json").unlink(missing_ok=True)
            # Not "failed" from an earlier try while the worker starts: dependents must wait.
            run.set_status("queued", error=None)
        stderr = runs[0].path / "stderr.txt"
        command = ([sys.executable, "-m", "xspec.runtime.worker", str(runs[0].path),
                    json.dumps(settings)] if len(runs) == 1 else
                   [sys.executable, "-m", "xspec.runtime.packed", json.dumps(settings),
                    *(str(run.path) for run in runs)])
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(stderr, "ab"))
        return proc, stderr

    @staticmethod
    def _poll(workspace, node, proc, stderr, reporter, outcome, running) -> None:
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
        if status.get("state") == "done":  # a packed process exits 1 if any member failed
            outcome.ran.append(node.id)
            reporter.finished(node, "done", None)
            return
        reason = status.get("error") if status.get("state") == "failed" else (
            f"worker exited with code {code} (killed?); see {stderr}")
        if status.get("state") != "failed":
            run.set_status("failed", error=reason)
        outcome.failed[node.id] = reason
        reporter.finished(node, "failed", reason)
