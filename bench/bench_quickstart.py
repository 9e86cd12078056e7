"""Quickstart wall time: `xspec run specs/quickstart.toml` into a fresh temporary workspace.

Takes minutes (goal: at most 5 on 2 cores); `run_all.py` runs it only with `--quickstart`.
The machine's load average is printed before and after: other processes on the same cores
stretch the wall time, and the CPU time (user + system of the run and its workers) does not
depend on them as much.

Usage: .venv/bin/python bench/bench_quickstart.py [--keep DIR] [--json out.json]
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Figures, cli  # noqa: E402

GOAL_S = 300.0


def main() -> None:
    parser = cli(__doc__.splitlines()[0],
                 keep={"type": Path, "help": "run into this workspace and keep it"})
    args = parser.parse_args()
    figures = Figures("quickstart")
    workspace = args.keep or Path(tempfile.mkdtemp(prefix="xspec-bench-quickstart-"))
    xspec = str(Path(sys.executable).with_name("xspec"))
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        result = subprocess.run([xspec, "run", "specs/quickstart.toml", "-w", str(workspace)],
                                cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
            raise SystemExit(f"xspec run specs/quickstart.toml exited with {result.returncode}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(f"quickstart into {workspace}: load average {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after")
        figures.add("quickstart wall time, s", wall, " s", ("<=", GOAL_S),
                    note=f"CPU {cpu:.0f} s over {os.cpu_count()} cores")
    finally:
        if args.keep is None:
            shutil.rmtree(workspace, ignore_errors=True)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
