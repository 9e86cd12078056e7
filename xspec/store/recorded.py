"""What each run folder says it ran: its node.json, read for ingest and `xspec status`.

The run folders are the truth and the database is derived from them: what a run was configured
with (config, lineage, dependencies) is its node.json as written when the node was prepared,
not the spec compiled now, whose text or defaults may have changed since. The spec (a plan)
still says which nodes belong to a study; `workspace_plan` needs none: every run folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from xspec.compiler.dag import Node, Plan
from xspec.extend.plugins import load_builtins
from xspec.store.reuse import mismatches, named
from xspec.store.workspace import RunDir, Workspace, node_record

FIELDS = ("id", "kind", "config", "deps", "lineage")  # what a node.json holds at least
RUN_NAME = re.compile(r"[A-Za-z0-9_]+-[0-9a-f]{12}")  # <kind>-<id12> (`Node.run_name`)


@dataclass(frozen=True)
class Unreadable:
    """A run folder whose node.json is missing (from a folder a node ran in), garbled, or not
    a node record."""

    run: RunDir
    why: str

    def __str__(self) -> str:
        return f"{self.run.node_file}: {self.why}"

    @property
    def consequence(self) -> str:
        """What `xspec run` does with the folder (`Workspace.check_reuse`)."""
        if self.run.node_file.exists():
            return ("`xspec run` refuses the folder until its node.json is restored or the "
                    "folder moved away")
        return "`xspec run` writes node.json again when it runs the node"


def started(run: RunDir) -> bool:
    """Whether a node ran (or was queued) in the folder: a status, metrics or checkpoints. A
    folder holding only a claim (lock.json) has not started: its node.json is being written."""
    return (run.status_file.exists() or run.metrics_file.exists()
            or run.checkpoints.is_dir())


def read_record(run: RunDir, node_id: str | None = None) -> dict | Unreadable | None:
    """node.json as a dict; None where the folder has none and never started (nothing ran:
    the spec says what it will run with); `Unreadable` naming why otherwise. With `node_id`,
    a node.json naming another node is unreadable too (the folder's name is the id's)."""
    try:
        text = run.node_file.read_text()
    except FileNotFoundError:
        return Unreadable(run, "missing, though a node ran in the folder") if started(run) \
            else None
    except OSError as exc:
        return Unreadable(run, f"unreadable ({exc.strerror})")
    try:
        record = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return Unreadable(run, f"unreadable (truncated or garbled: {str(exc)[:80]})")
    missing = [f for f in FIELDS if not isinstance(record, dict) or f not in record]
    if missing:
        return Unreadable(run, f"not a node record (no {', '.join(missing)})")
    if node_id is not None and record["id"] != node_id:
        return Unreadable(run, f"names node {str(record['id'])[:12]}, not this folder's "
                               f"{node_id[:12]}")
    return record


@dataclass(frozen=True)
class StudyRun:
    """One node of a study with its run folder and the record the database keeps for it."""

    node: Node
    run: RunDir
    record: dict
    """node.json's; the plan's (`node_record`) where the node has not started, or, named in
    `problem`, where its node.json is unreadable."""
    problem: Unreadable | None = None


def study_runs(workspace: Workspace, plan: Plan) -> list[StudyRun]:
    """The plan's own nodes, each with what its run folder says it ran (`StudyRun.record`)."""
    found = []
    for node in plan.own():
        run = workspace.run_dir(node)
        record = read_record(run, node.id)
        if isinstance(record, dict):
            found.append(StudyRun(node, run, record))
        else:
            found.append(StudyRun(node, run, node_record(node), record))
    return found


def problem_line(entry: StudyRun) -> str:
    """The warning for a node whose node.json is unreadable: its results are kept."""
    return (f"{entry.problem}; node {entry.node.name or entry.node.short}'s results are kept "
            "with its config and lineage from the spec as compiled now (same id; a default "
            f"changed since it ran would not show); {entry.problem.consequence}")


def folder_notes(workspace: Workspace, plan: Plan) -> dict[str, str]:
    """{node id: note} for the plan's run folders whose node.json is unreadable, or differs
    from the spec compiled now (a folder `xspec run` will refuse, naming the fields)."""
    notes = {}
    for entry in study_runs(workspace, plan):
        if entry.problem is not None:
            notes[entry.node.id] = f"{entry.problem}; {entry.problem.consequence}"
        elif found := mismatches(entry.record, entry.node):
            notes[entry.node.id] = (f"node.json differs from the spec in {named(found, 3)}: "
                                    "`xspec run` refuses this folder")
    return notes


def workspace_plan(workspace: Workspace) -> tuple[Plan, dict[str, str]]:
    """Every run folder of the workspace as a plan of nodes rebuilt from their node.json (their
    config its JSON, their names as recorded), with {node id: problem} for the folders whose
    node.json is unreadable (shown by their folder's name). No spec is read."""
    load_builtins()  # the kinds' order
    plan = Plan(study="", spec_path="")
    problems: dict[str, str] = {}
    folders = sorted(p for p in workspace.runs.iterdir() if p.is_dir()
                     and RUN_NAME.fullmatch(p.name)) if workspace.runs.is_dir() else []
    for path in folders:
        run = RunDir(path)
        record = read_record(run)
        kind, _, short = path.name.rpartition("-")
        node = Node(str(record["id"]), record["kind"], record["config"], tuple(record["deps"]),
                    record["lineage"], name=record.get("name") or path.name,
                    dep_runs=tuple(record.get("dep_runs", ())),
                    dep_kinds=tuple(record.get("dep_kinds", ())),
                    identity={}) if isinstance(record, dict) else None
        if node is None or node.run_name != path.name:
            problems[short] = (
                f"{run.node_file}: not written yet (claimed, not started)" if record is None
                else str(record) if isinstance(record, Unreadable)
                else f"{run.node_file}: names node {node.run_name}, not this folder")
            node = Node(short, kind, {}, (), {}, name=path.name, identity={})
        plan.nodes[node.id] = node
    return plan, problems
