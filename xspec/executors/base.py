"""What every executor shares: the protocol the CLI and `xspec.study` call, which nodes are
pending and ready, a progress sink, and the workspace's own view of node states."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Protocol

from xspec.store.locks import Claim, describe, try_claim
from xspec.store.processes import gone
from xspec.store.workspace import Workspace
from xspec.spec.tables.settings import RunSettings

POLL_SECONDS = 0.5


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    failed: dict[str, str] = field(default_factory=dict)  # node id -> reason
    blocked: list[str] = field(default_factory=list)  # an upstream node failed
    jobs: list[tuple] = field(default_factory=list)  # (node, job id): what a batch system queued

    @property
    def doomed(self) -> set[str]:
        return set(self.failed) | set(self.blocked)


class Executor(Protocol):
    """One protocol for every backend (`xspec.executors.get_executor`). `batch` executors
    (SLURM) queue the pending nodes and return at once (`Outcome.jobs`); the others run them
    here and return when they are done. `states` is {node id: (state, detail)}; `cancel` stops
    what is queued or running and returns what it stopped (job ids, pids)."""

    name: str
    batch: bool

    def submit(self, plan, workspace: Workspace, settings: RunSettings | dict,
               options: dict | None = None, reporter=None) -> "Outcome": ...

    def states(self, plan, workspace: Workspace) -> dict[str, tuple[str, str]]: ...

    def cancel(self, plan, workspace: Workspace) -> list[str]: ...


class RunsHere:
    """`states` and `cancel` of the executors that run nodes on this machine: the workspace's
    status files, and SIGTERM to node processes of this host that are still alive."""

    batch = False

    def states(self, plan, workspace: Workspace) -> dict[str, tuple[str, str]]:
        found = {}
        for node in plan.ordered():
            run = workspace.run_dir(node)
            status = run.status()
            state = status.get("state", "pending")
            detail = status.get("error") or ""
            if state == "running" and status.get("pid") != os.getpid() and gone(status):
                state, detail = "failed", (f"process {status.get('pid')} is gone before the node "
                                           f"finished (killed?); log: {run.log_file}")
            found[node.id] = (state, detail)
        return found

    def cancel(self, plan, workspace: Workspace) -> list[str]:
        stopped = []
        for node in plan.ordered():
            run = workspace.run_dir(node)
            if run.alive_elsewhere():
                pid = int(run.status()["pid"])
                os.kill(pid, signal.SIGTERM)
                stopped.append(str(pid))
        return stopped


class Reporter(Protocol):
    def started(self, node, total_steps: int | None) -> None: ...
    def advanced(self, node, progress: dict) -> None: ...
    def finished(self, node, state: str, reason: str | None) -> None: ...
    # Optional: waiting(node, holder: str), when another process runs the node.


class SilentReporter:
    def started(self, node, total_steps):
        pass

    def advanced(self, node, progress):
        pass

    def finished(self, node, state, reason):
        pass


def pending(workspace: Workspace, plan) -> list:
    """The nodes not done yet, in dependency order; writes nothing (node.json is written when
    a node is claimed, so a 100 k-node plan starts its first node at once)."""
    workspace.ensure_writable()
    workspace.check_reuse(plan)
    return [node for node in plan.ordered() if not workspace.run_dir(node).done]


def claim(workspace: Workspace, node, reporter, told: set[str]) -> Claim | str:
    """Claim a ready node for this process and write its node.json; 'held' while another
    process runs it (said once through `reporter.waiting`), 'done' if it finished meanwhile."""
    run = workspace.run_dir(node)
    result = try_claim(run.path)
    if isinstance(result, dict):
        if node.id not in told:
            told.add(node.id)
            getattr(reporter, "waiting", lambda node, holder: None)(node, describe(result))
        return "held"
    if run.done:
        result.release()
        return "done"
    if run.alive_elsewhere():  # its lock.json was deleted, but its status names a live owner
        result.release()
        return "held"
    workspace.prepare(node)
    return result


def claim_or_wait(workspace: Workspace, node, reporter, told: set[str]) -> Claim | None:
    """`claim`, waiting while another process holds the node; None if that one finished it."""
    while (result := claim(workspace, node, reporter, told)) == "held":
        time.sleep(POLL_SECONDS)
    return None if result == "done" else result


def prepare(workspace: Workspace, plan) -> list:
    """Write node.json for every node; return the nodes not done yet, in dependency order.
    (For batch systems, whose jobs all read their node.json; local runs use `pending`.)"""
    workspace.ensure_writable()
    workspace.check_reuse(plan)
    pending = []
    for node in plan.ordered():
        if not workspace.prepare(node).done:
            pending.append(node)
    return pending


def ready(node, plan, workspace: Workspace, doomed: set[str]) -> str:
    """'ready', 'wait' (a dependency is still to run) or 'blocked' (a dependency failed or was
    blocked in this execution; a failure left over from an earlier one is being retried)."""
    if any(dep in doomed for dep in node.deps):
        return "blocked"
    if all(workspace.state(plan.nodes[dep]) == "done" for dep in node.deps):
        return "ready"
    return "wait"


def total_steps(node) -> int | None:
    from xspec.extend.registry import NODE_KINDS

    kind = NODE_KINDS.find(node.kind)
    return node.identity.get("epochs") if kind is not None and kind.trains else None


def pack_jobs(nodes, settings: RunSettings) -> dict[str, list]:
    """{node id: the nodes of its job}: siblings packed `run.pack` to a job (`[run] pack`)."""
    from xspec.compiler.packing import packs

    return {node.id: job for job in packs(nodes, settings.pack) for node in job}
