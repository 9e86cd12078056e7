"""`xspec plan`'s default view: nodes grouped by kind, only what tells them apart, and what the
study will cost. `--all` prints every node (`xspec.cli_views.plan_table`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from xspec.cli_views import STATE_STYLE, print_notes
from xspec.compiler.estimate import Estimate
from xspec.compiler.packing import packed_count
from xspec.compiler.naming import show


def fact_values(plan, kind: str) -> dict[str, list[str]]:
    """{short name: its distinct values in plan order} for the nodes of `kind`; "off" first
    where some nodes leave the field out (a defence that is off there)."""
    nodes = [n for n in plan.own() if n.kind == kind]
    out: dict[str, list[str]] = {}
    for fact in plan.facts.get(kind, []):
        values = [fact.value(n) for n in nodes if fact.value(n) is not None]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            values = sorted(values)
        shown = list(dict.fromkeys(show(v) for v in values))
        if values and len(values) < len(nodes):  # a field only some nodes set (a defence)
            shown = ["off", *shown]
        out[fact.name] = shown
    return out


def _cost(estimate: Estimate, kind: str) -> str:
    cost = estimate.kinds.get(kind)
    if cost is None:
        return ""
    amount = f"~{estimate.amount(cost.seconds):,.1f} {estimate.unit}"
    return amount + (" + unknown" if cost.unknown else "") if cost.seconds or cost.unknown \
        else "~0"


def pack_summary(plan, workspace, pack: int) -> dict | None:
    """Jobs `[run] pack` makes of the nodes not done yet, or None when nothing is packed."""
    pending = [n for n in plan.ordered() if workspace.state(n) != "done"]
    jobs, nodes = packed_count(pending, pack)
    return {"pack": pack, "packed_jobs": jobs, "packed_nodes": nodes} if jobs else None


def plan_overview(console: Console, plan, workspace, estimate: Estimate, pack: int = 1) -> None:
    kinds = [k for k in dict.fromkeys(n.kind for n in plan.ordered())]
    total_states: dict[str, int] = {}
    console.print(Text(f"plan of study {plan.study!r} ({plan.spec_path})", style="bold"))
    for kind in kinds:
        nodes = plan.of_kind(kind)
        states: dict[str, int] = {}
        for node in nodes:
            state = workspace.state(node)
            states[state] = states.get(state, 0) + 1
            total_states[state] = total_states.get(state, 0) + 1
        line = Text(f"{kind:<15}{len(nodes):>4} node{'s' if len(nodes) > 1 else ' '}  ")
        upstream = sorted({plan.external[n.id][0] for n in nodes if n.id in plan.external})
        if upstream:
            line.append(f"({sum(n.id in plan.external for n in nodes)} from "
                        f"{', '.join(upstream)}) ", style="cyan")
        for state, count in sorted(states.items()):
            line.append(f"{count} {state} ", style=STATE_STYLE.get(state, "white"))
        line.append(f" {_cost(estimate, kind)}", style="dim")
        console.print(line)
        facts = Table(box=None, show_header=False, padding=(0, 1))
        facts.add_column(no_wrap=True)
        facts.add_column(overflow="fold")
        for name, shown in fact_values(plan, kind).items():
            facts.add_row(Text(f"    {name}"), Text(", ".join(shown)))
        for reason in estimate.kinds[kind].unknown if kind in estimate.kinds else []:
            facts.add_row(Text("    no estimate", style="yellow"), Text(reason))
        if facts.row_count:
            console.print(facts)
    packed = pack_summary(plan, workspace, pack)
    if packed:
        console.print(Text(
            f"packed: {packed['packed_nodes']} pending nodes in {packed['packed_jobs']} "
            f"job{'s' if packed['packed_jobs'] > 1 else ''} "
            f"(run.pack = {pack}): each job decodes, augments and evaluates once for its "
            "members; the estimate counts each member's model time, which packing keeps"))
    print_notes(console, plan)
    unknown = any(c.unknown for c in estimate.kinds.values())
    console.print(Text(
        f"{len(plan.nodes)} nodes: " + ", ".join(f"{v} {k}" for k, v in sorted(
            total_states.items())) + f"; compute ~{estimate.amount(estimate.total):,.1f} "
        f"{estimate.unit}{' for the nodes with an estimate' if unknown else ''}"))
    console.print(Text("estimate: training pairs x epochs x views (2 with SSL) plus evaluation "
                       "images x evaluations (x2 with ASR), at the rates in "
                       "xspec/data/throughput.json (sources in --json); data loading and "
                       "queueing not counted. --all lists every node.", style="dim"))


def overview_json(plan, estimate: Estimate, packed: dict | None = None) -> dict:
    kinds = dict.fromkeys(n.kind for n in plan.ordered())
    return {"kinds": {k: {"nodes": len(plan.of_kind(k)), "varies": fact_values(plan, k)}
                      for k in kinds}, "estimate": estimate.as_json(),
            "packing": packed or {"packed_jobs": 0, "packed_nodes": 0}}
