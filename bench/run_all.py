"""Run every benchmark of bench/ and print one summary table: figure, value, goal, met?

Each benchmark runs in its own process (a fresh interpreter: no state shared between them) and
hands its figures back as JSON; `bench_report.py` prints plain lines, parsed here. Every figure
compares xspec with a reference measured in the same run, so the numbers mean something on a
shared, noisy machine; the load average is printed with the table all the same.

Usage: .venv/bin/python bench/run_all.py [--quickstart] [--only train,eval,...] [--threads 2]
       (grid packing, ~30 min: --only pack)
       (or `make bench`)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Figure, load_figures, table  # noqa: E402

BENCH = Path(__file__).resolve().parent
BENCHES = ("train", "eval", "evalsets", "data", "memory", "compiler", "report", "gpu", "estimate",
           "quickstart", "pack", "loader")
LONG = ("quickstart", "pack", "loader")  # minutes each: only with --quickstart or --only
REPORT_LINE = re.compile(r"^(?P<what>build_\w+.*?): (?P<s>[\d.]+) s(?: wall)?"
                         r"(?:, (?P<cpu>[\d.]+) s CPU)?", re.MULTILINE)
REPORT_GOAL_S = 5.0


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}: {cpu}, "
            f"{os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def run_json_bench(name: str, extra: list[str]) -> list[Figure]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        command = [sys.executable, str(BENCH / f"bench_{name}.py"), "--json", str(out), *extra]
        code = subprocess.run(command, cwd=ROOT).returncode
        if code != 0 or not out.stat().st_size:
            return [Figure(name, "FAILED", None, note=f"exit code {code}")]
        return load_figures(out)
    finally:
        out.unlink(missing_ok=True)


def run_report_bench() -> list[Figure]:
    script = BENCH / "bench_report.py"
    if not script.exists():
        return [Figure("report", "bench_report.py not found", None)]
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                            text=True)
    print(result.stdout, end="")
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        return [Figure("report", "FAILED", None, note=f"exit code {result.returncode}")]
    rows = [Figure("report", f"{m['what']}, wall s", float(m["s"]), " s", ("<", REPORT_GOAL_S),
                   note=f"CPU {m['cpu']} s" if m["cpu"] else "")
            for m in REPORT_LINE.finditer(result.stdout)]
    return rows or [Figure("report", "no timing line found in its output", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quickstart", action="store_true",
                        help="also time the quickstart (several minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else [b for b in BENCHES if b not in LONG]
    if args.quickstart and "quickstart" not in chosen:
        chosen.append("quickstart")
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}")
    header = machine()
    load = [os.getloadavg()[0]]
    rows: list[Figure] = []
    for name in chosen:
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        if name == "report":
            rows += run_report_bench()
        else:
            threads = [] if name in ("quickstart", "estimate", "pack") else ["--threads",
                                                                       str(args.threads)]
            rows += run_json_bench(name, threads)
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
        load.append(os.getloadavg()[0])
    print(f"\n{header}")
    print(f"load average (1 min) during the run: {min(load):.1f} to {max(load):.1f} "
          f"on {os.cpu_count()} cores\n")
    print(table(rows))
    missed = [r for r in rows if r.met is False]
    print(f"\n{sum(r.met is True for r in rows)} goals met, {len(missed)} missed"
          + (": " + "; ".join(f"{r.bench}: {r.figure}" for r in missed) if missed else ""))


if __name__ == "__main__":
    main()
