"""`xspec plan`'s CPU estimate against measured CPU time, study by study: plans each spec, runs
it in a fresh workspace (executor `local`, so node processes are children) and prints
estimate / measured CPU seconds (self + children, `resource.getrusage`). Goal: within 2x on each.

Defaults: every toy twin (specs/toy/*.toml) and the example plugin studies; running them all
takes hours on 2 shared cores, so name the specs to run (`--only mini,study`).

Usage: .venv/bin/python bench/bench_estimate_measured.py [--only NAME,...] [--json out.json]
"""

from __future__ import annotations

import argparse
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

SPECS = sorted((ROOT / "specs" / "toy").glob("*.toml")) + [
    ROOT / "examples" / "plugins" / "study.toml", ROOT / "examples" / "plugins" / "pruning.toml"]


def cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def measure(spec: Path) -> tuple[float, float, float]:
    """(estimated CPU seconds, measured CPU seconds, wall seconds) of one study, from scratch."""
    study = open_study(spec)
    cost = estimate(study.plan, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        before, started = cpu_seconds(), time.perf_counter()
        outcome = run_study(study, Workspace(tmp), "local")
        if outcome.failed:
            raise SystemExit(f"{spec}: runs failed: {outcome.failed}")
        return cost.total, cpu_seconds() - before, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated spec stems to run")
    parser.add_argument("--json")
    args = parser.parse_args()
    chosen = [s for s in SPECS if not args.only or s.stem in args.only.split(",")]
    figures = Figures("estimate_measured")
    for spec in chosen:
        estimated, measured, wall = measure(spec)
        figures.add(f"{spec.parent.name}/{spec.stem}: estimate / measured CPU time",
                    round(estimated / max(measured, 1e-9), 2), "x",
                    note=f"{estimated / 60:.2f} CPU-min estimated, {measured / 60:.2f} measured "
                         f"({wall / 60:.1f} min wall)")
    figures.dump(args.json)


if __name__ == "__main__":
    main()
