"""What the CLI prints: plan and status tables, progress bars. No logic of its own."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from xspec.store import locks

STATE_STYLE = {"done": "green", "failed": "red", "running": "yellow", "queued": "cyan",
               "pending": "white"}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with terminal control characters shown as escapes (\\x1b), so that a key name, a
    `where` key or an error message from a spec or a run folder cannot drive the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class SafeConsole(Console):
    """A console that never writes control characters that come from data: every string and
    Text it renders (table cells included) goes through `printable`; styles still colour."""

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(printable(text), **kwargs)

    def render(self, renderable, options=None):
        if isinstance(renderable, Text) and _CONTROL.search(renderable.plain):
            cuts = sorted({i for m in _CONTROL.finditer(renderable.plain) for i in m.span()})
            safe = Text(style=renderable.style, end=renderable.end)
            for part in renderable.divide(cuts):
                if _CONTROL.fullmatch(part.plain):
                    safe.append(printable(part.plain), style=part.get_style_at_offset(self, 0))
                else:
                    safe.append_text(part)
            renderable = safe
        return super().render(renderable, options)


def styled(label: str, style: str, text: str) -> Text:
    """`label` in `style`, then `text` as plain text: user data is never read as markup."""
    return Text.assemble((label, style), " ", text)


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, "white"))


def print_notes(console: Console, plan) -> None:
    for note in plan.notes:
        label = "warning:" if note.startswith("large plan") else "note:"
        console.print(styled(label, "yellow", note))


def plan_json(plan) -> dict:
    """Nodes of other studies this one takes inputs from say which ("from")."""
    return {"study": plan.study, "notes": plan.notes, "nodes": [
        {"id": n.id, "kind": n.kind, "name": n.name, "deps": list(n.deps), "config": n.identity,
         **({"from": plan.external[n.id][0]} if n.id in plan.external else {})}
        for n in plan.ordered()]}


def shown_name(plan, node) -> str:
    """A node's name; one of another study's is prefixed with that study (study:name)."""
    study = plan.external.get(node.id, (None,))[0]
    return f"{study}:{node.name}" if study else node.name


def _varying(plan, node) -> str:
    keys = plan.varying.get(node.kind, [])
    return ", ".join(f"{k}={node.lineage.get(k)}" for k in keys)


LARGE_PLAN = 200  # nodes; past this a plain aligned listing (a rich table takes ~0.5 s)


def plan_table(console: Console, plan, workspace) -> None:
    rows, counts, states = [], {}, {}
    for node in plan.ordered():
        state = workspace.state(node)
        counts[node.kind] = counts.get(node.kind, 0) + 1
        states[state] = states.get(state, 0) + 1
        rows.append((node.kind, node.short, _varying(plan, node), state))
    if len(rows) > LARGE_PLAN:
        width = max(len(kind) for kind, *_ in rows)
        lines = [f"{kind:<{width}}  {short}  [{STATE_STYLE.get(state, 'white')}]{state:<7}[/]  "
                 f"{escape(varies)}" for kind, short, varies, state in rows]  # escaped: data
        console.print("\n".join(lines), highlight=False, soft_wrap=True)
    else:
        table = Table(title=Text(f"plan of study {plan.study!r}"))
        for column in ("kind", "id", "varies", "state"):
            table.add_column(column, overflow="fold")
        for kind, short, varies, state in rows:
            table.add_row(kind, short, Text(varies), _state(state))
        console.print(table)
    print_notes(console, plan)
    kinds = ", ".join(f"{v} {k}" for k, v in counts.items())
    console.print(f"{len(plan.nodes)} nodes ({kinds}); "
                  + ", ".join(f"{v} {k}" for k, v in sorted(states.items())), markup=False)


def status_table(console: Console, plan, workspace, states: dict | None = None,
                 notes: dict | None = None) -> None:
    """`states` ({node id: (state, detail)}) overrides status.json where SLURM knows more;
    `notes` ({node id: text}) adds a line about a node's run folder (its node.json). A plan
    without a study is every run folder of the workspace (`xspec status -w DIR`).

    Paths in the detail column are relative to the workspace, named once in the title."""
    if not plan.nodes and not plan.study:
        console.print(f"no run folders in {workspace.runs}", markup=False)
        return
    what = f"study {plan.study!r}" if plan.study else "every run folder"
    table = Table(title=Text(f"status of {what} in {workspace.root}"))
    free = max(console.width - 32, 40)  # less the id and state columns and the borders
    detail_width = max(41, free * 3 // 5)  # "log: runs/shrink_perturb-<id>/log.txt" on a line
    table.add_column("node", overflow="fold", width=max(free - detail_width, 16))
    table.add_column("id", no_wrap=True, min_width=12)
    table.add_column("state", no_wrap=True, min_width=7)
    table.add_column("detail", overflow="fold", width=detail_width)
    prefix = f"{workspace.root}{os.sep}"
    for node in plan.ordered():
        run = workspace.run_dir(node)
        status = run.status()
        state = status.get("state", "pending")
        detail = status.get("error") or ""
        if state == "failed":
            detail += f"\nlog: {run.log_file}"
        if states and node.id in states:
            state, detail = states[node.id]
        try:
            holder = locks.holder(run.path) if state != "done" else None
        except locks.ClockSkew as exc:
            holder, detail = None, str(exc) + (f"\n{detail}" if detail else "")
        if holder is not None:
            detail = f"claimed by {locks.describe(holder)}" + (f"\n{detail}" if detail else "")
        if notes and node.id in notes:
            detail = notes[node.id] + (f"\n{detail}" if detail else "")
        epoch = status.get("epoch")
        shown = _state(state) if epoch is None else Text.assemble(
            (state, STATE_STYLE.get(state, "white")), f"\nepoch {epoch}")
        table.add_row(Text(shown_name(plan, node).replace(",", ", ")), node.short, shown,
                      Text(detail.replace(prefix, "")))
    console.print(table)


class ProgressReporter:
    def __init__(self, progress: Progress, console: Console):
        self.progress, self.console, self.tasks = progress, console, {}

    def started(self, node, total_steps):
        self.tasks[node.id] = self.progress.add_task(node.name, total=total_steps or 1)

    def advanced(self, node, progress):
        if node.id in self.tasks and "epoch" in progress:
            self.progress.update(self.tasks[node.id], completed=progress["epoch"])

    def waiting(self, node, holder):
        self.console.print(styled("waiting", "yellow", f"{node.name}: being run by {holder}; "
                                  "its result will be used"))

    def finished(self, node, state, reason):
        task = self.tasks.get(node.id)
        if task is not None:
            total = self.progress.tasks[self.tasks[node.id]].total
            self.progress.update(task, completed=total if state == "done" else None)
        if state == "failed":
            self.console.print(styled("failed", "red", f"{node.name}: {reason}"))


def run_with_progress(console: Console, spec: Path, workspace, executor: str):
    from xspec.study import open_study, report_study, run_study

    study = open_study(spec)
    print_notes(console, study.plan)
    started = time.monotonic()
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        outcome = run_study(study, workspace, executor, ProgressReporter(progress, console))
    console.print(
        f"ran {len(outcome.ran)}, already done {len(outcome.skipped)}, failed "
        f"{len(outcome.failed)}, blocked {len(outcome.blocked)} "
        f"in {time.monotonic() - started:.0f} s"
    )
    report = report_study(study, workspace)
    return outcome, report


def print_findings(console: Console, findings) -> bool:
    """Print a data check; True when nothing is fatal."""
    for finding in findings:
        facts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in finding.facts.items())
        console.print(Text.assemble((finding.dataset, "bold"), f": {facts}"))
        for line in finding.warnings:
            console.print(Text.assemble("  ", ("warning:", "yellow"), " ", line))
        for line in finding.fatal:
            console.print(Text.assemble("  ", ("fatal:", "red"), " ", line))
    ok = not any(f.fatal for f in findings)
    console.print("[green]data ok[/green]" if ok else "[red]data check failed[/red]")
    return ok
