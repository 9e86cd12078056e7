"""Run pending nodes as child processes on this machine, in dependency order, at most
`concurrency` at a time. A child that dies (kill -9, out of memory) fails only its node.
Each node is claimed first (`xspec.store.locks`): a node another `xspec run` holds is waited
for, never started twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from xspec.executors.base import (POLL_SECONDS, Outcome, RunsHere, SilentReporter, claim, pack_jobs,
                                  pending, ready, total_steps)
from xspec.store.workspace import Workspace
from xspec.spec.tables.settings import RunSettings

# `-P`: the folder `xspec run` is typed in is not put on the worker's sys.path, so a json.py
# (or torch.py, ...) lying there is never imported; plugins load from their recorded files.
WORKER_PYTHON = [sys.executable, "-P"]


def worker_env() -> dict:
    """The environment of a worker: ours, with PYTHONSAFEPATH set so that processes it starts
    (DDP ranks, loader workers) do not import from their current folder either."""
    return {**os.environ, "PYTHONSAFEPATH": "1"}


class LocalExecutor(RunsHere):
    name = "local"

    def submit(self, plan, workspace: Workspace, settings: RunSettings | dict,
               options: dict | None = None, reporter=None) -> Outcome:
        reporter, settings = reporter or SilentReporter(), RunSettings.of(settings)
        waiting = pending(workspace, plan)
        outcome = Outcome(skipped=[n.id for n in plan.ordered() if n not in waiting])
        running: dict[str, tuple] = {}  # node id -> (node, process, its stderr file, claim)
        try:
            self._loop(plan, workspace, settings, reporter, waiting, outcome, running)
        finally:
            for _, proc, _, held in running.values():
                if proc.poll() is not None:
                    held.release()
                # else a worker outlives us (an exception here): its claim names its pid, so
                # another `xspec run` waits for it, and takes the node over once it is gone
        return outcome

    def _loop(self, plan, workspace, settings, reporter, waiting, outcome, running) -> None:
        job_of = pack_jobs(waiting, settings)
        limit, told = settings.concurrency, set()
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
                elif verdict == "ready" and len({id(r[1]) for r in running.values()}) < limit:
                    job = [n for n in job_of[node.id] if n in waiting
                           and ready(n, plan, workspace, outcome.doomed) == "ready"
                           and not workspace.run_dir(n).alive_elsewhere()]
                    claims = self._claim(workspace, job, reporter, told, waiting, outcome)
                    if not claims:
                        continue
                    job = [n for n in job if n.id in claims]
                    proc, stderr = self._start(workspace, job, settings, claims)
                    for member in job:
                        waiting.remove(member)
                        running[member.id] = (member, proc, stderr, claims[member.id])
                        reporter.started(member, total_steps(member))
            if not running and waiting and all(
                ready(n, plan, workspace, outcome.doomed) == "wait" for n in waiting
            ):
                break  # nothing can make progress; should not happen in a valid DAG
            time.sleep(POLL_SECONDS)
            for node_id, (node, proc, stderr, held) in list(running.items()):
                self._poll(workspace, node, proc, stderr, reporter, outcome, running)
                if node_id not in running:
                    held.release()

    @staticmethod
    def _claim(workspace, job, reporter, told, waiting, outcome) -> dict:
        """{node id: claim} for the job's nodes this process may start; a node held by another
        process stays waiting, one it finished meanwhile is skipped."""
        claims = {}
        for node in job:
            held = claim(workspace, node, reporter, told)
            if held == "done":
                waiting.remove(node)
                outcome.skipped.append(node.id)
            elif held != "held":
                claims[node.id] = held
        return claims

    @staticmethod
    def _start(workspace: Workspace, job: list, settings: RunSettings, claims: dict):
        """One worker process for the job's node, or one packed process for its siblings."""
        runs = [workspace.run_dir(node) for node in job]
        for run in runs:
            (run.path / "progress.json").unlink(missing_ok=True)
            # Not "failed" from an earlier try while the worker starts: dependents must wait.
            run.set_status("queued", error=None, owner=os.getpid(), host=os.uname().nodename)
        stderr = runs[0].path / "stderr.txt"
        command = ([*WORKER_PYTHON, "-m", "xspec.runtime.node", str(runs[0].path),
                    settings.model_dump_json()] if len(runs) == 1 else
                   [*WORKER_PYTHON, "-m", "xspec.runtime.packed", settings.model_dump_json(),
                    *(str(run.path) for run in runs)])
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(stderr, "ab"),
                                env=worker_env())
        for node in job:
            claims[node.id].set_worker(proc.pid)
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
