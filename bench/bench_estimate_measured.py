"""`xspec plan`'s CPU estimate against measured CPU time, study by study: plans each spec, runs
it in a fresh workspace (executor `local`, so node processes are children) and prints
estimate / measured CPU seconds (self + children, `resource.getrusage`). Goal: within 2x on each.

Defaults: every toy twin (specs/toy/*.toml, specs/baselines/toy/*.toml) and the example plugin
studies, one after the other: about 86 CPU-minutes estimated in all (toy/attack_defence 20,
baselines/toy/detection 13.5), 1.5 h on an idle 2-core machine and several times that on a busy
one; name the specs to run (`--only mini,study`), or `--records FILE --resume` to go on where
an interrupted bench stopped.

Usage: .venv/bin/python bench/bench_estimate_measured.py [--only NAME,...] [--json out.json]
       [--keep DIR] [--records runs.jsonl [--resume]] [--reestimate runs.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Figures  # noqa: E402

from xspec.compiler.estimate import estimate  # noqa: E402
from xspec.store.workspace import Workspace  # noqa: E402
from xspec.study import open_study, run_study  # noqa: E402

SPECS = sorted((ROOT / "specs" / "toy").glob("*.toml")) + sorted(
    (ROOT / "specs" / "baselines" / "toy").glob("*.toml")) + [
    ROOT / "examples" / "plugins" / "study.toml", ROOT / "examples" / "plugins" / "pruning.toml"]


def cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def measure(spec: Path, keep: str | None = None) -> tuple[dict, object]:
    """One study from scratch: estimated and measured CPU seconds in total and per node kind
    (a node's own figure is the `cpu_s` its process recorded in status.json), and wall time;
    with the estimate itself."""
    study = open_study(spec)
    cost = estimate(study.plan, device="cpu", threads=study.spec.run.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep) / spec.stem if keep else Path(tmp)
        before, started, load = cpu_seconds(), time.perf_counter(), os.getloadavg()[0]
        workspace = Workspace(root)
        outcome = run_study(study, workspace, "local")
        if outcome.failed:
            raise SystemExit(f"{spec}: runs failed: {outcome.failed}")
        measured, wall = cpu_seconds() - before, time.perf_counter() - started
        load = (load + os.getloadavg()[0]) / 2  # the machine's 1-minute load, start and end
        kinds: dict[str, float] = {}
        for node in study.plan.ordered():
            status = workspace.run_dir(node).status()
            kinds[node.kind] = kinds.get(node.kind, 0.0) + status.get("cpu_s", 0.0)
    return {"spec": f"{spec.parent.name}/{spec.stem}", "nodes": len(study.plan.nodes),
            "estimated": cost.total, "measured": measured, "wall": wall, "load": round(load, 1),
            "kinds": {k: {"nodes": c.nodes, "estimated": round(c.seconds, 1),
                          "measured": round(kinds.get(k, 0.0), 1)}
                      for k, c in cost.kinds.items()}}, cost


def spec_of(name: str) -> Path:
    """'toy/mini' -> the spec file it names in SPECS."""
    return next(s for s in SPECS if f"{s.parent.name}/{s.stem}" == name)


def add_row(figures, got: dict, cost) -> str:
    """One study's row: estimate / measured CPU time (goal: within 2x either way), per kind;
    returns the row of RESULTS.md's table."""
    kinds = ", ".join(f"{k} x{c.nodes} {c.seconds:.0f}/{got['kinds'].get(k, {}).get('measured', 0):.0f} s"
                      for k, c in cost.kinds.items())
    load = f", load {got['load']}" if "load" in got else ""
    figures.add(f"{got['spec']}: estimate / measured CPU time",
                round(cost.total / max(got["measured"], 1e-9), 2), "x", goal=("within", 2.0),
                note=f"{cost.total / 60:.2f} CPU-min estimated, {got['measured'] / 60:.2f} "
                     f"measured ({got['wall'] / 60:.1f} min wall{load}; per kind "
                     f"estimated/measured: {kinds}; runner {cost.runner:.0f} s)")
    return (f"| {got['spec']} | {got['nodes']} | {cost.total / 60:.2f} | {got['measured'] / 60:.2f} "
            f"| {got['wall'] / 60:.1f} | {got.get('load', '-')} | "
            f"{cost.total / max(got['measured'], 1e-9):.2f}x |")


def reestimate(records: str, json_out: str | None) -> None:
    figures, rows = Figures("estimate_measured"), []
    for line in Path(records).read_text().splitlines():
        got = json.loads(line)
        study = open_study(spec_of(got["spec"]))
        rows.append(add_row(figures, got, estimate(study.plan, device="cpu",
                                                   threads=study.spec.run.threads)))
    print("\n| study | nodes | estimate CPU-min | measured CPU-min | wall min | load | "
          "estimate / measured |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    figures.dump(json_out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated spec stems to run")
    parser.add_argument("--json")
    parser.add_argument("--keep", help="keep each study's workspace under this folder")
    parser.add_argument("--records", help="append each study's figures (per kind too) here")
    parser.add_argument("--resume", action="store_true",
                        help="skip the studies the --records file already holds")
    parser.add_argument("--reestimate", metavar="RECORDS",
                        help="run nothing: set today's estimate against the measurements a "
                             "--records file holds (after a change to the estimate)")
    args = parser.parse_args()
    if args.reestimate:
        return reestimate(args.reestimate, args.json)
    chosen = [s for s in SPECS if not args.only or s.stem in args.only.split(",")]
    if args.resume and args.records and Path(args.records).exists():
        done = {json.loads(line)["spec"] for line in Path(args.records).read_text().splitlines()}
        chosen = [s for s in chosen if f"{s.parent.name}/{s.stem}" not in done]
    figures = Figures("estimate_measured")
    for spec in chosen:
        got, cost = measure(spec, args.keep)
        add_row(figures, got, cost)
        if args.records:
            with open(args.records, "a") as handle:
                handle.write(json.dumps(got) + "\n")
    figures.dump(args.json)


if __name__ == "__main__":
    main()
