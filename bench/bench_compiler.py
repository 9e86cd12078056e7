"""Compiler and CLI: `xspec plan` over every spec in specs/, the CLI's import time, and whether
`validate`, `plan` or `status` import torch (they must not).

Specs that name local files (a checkpoint, a labels file) get placeholder files through their
environment variables (CLIP_RN50, XSPEC_TOY_CKPT, XSPEC_TOY_LABELS); compiling only stats them.

Usage: .venv/bin/python bench/bench_compiler.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Figures, cli, median  # noqa: E402

PYTHON = sys.executable
XSPEC = str(Path(PYTHON).with_name("xspec"))
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|\s+xspec\.cli$", re.MULTILINE)
TORCH_PROBE = """
import sys, tempfile
from typer.testing import CliRunner
from xspec.cli import app
args = [{cmd!r}, 'specs/quickstart.toml'] + ([] if {cmd!r} == 'validate' else
                                           ['-w', tempfile.mkdtemp()])
result = CliRunner().invoke(app, args)
print(result.exit_code, 'torch' in sys.modules)
"""


def placeholder_env(root: Path) -> dict[str, str]:
    for name in ("RN50.pt", "toy.pt", "labels.txt"):
        (root / name).write_bytes(b"")
    return {"CLIP_RN50": str(root / "RN50.pt"), "XSPEC_TOY_CKPT": str(root / "toy.pt"),
            "XSPEC_TOY_LABELS": str(root / "labels.txt")}


def specs() -> list[Path]:
    return sorted((ROOT / "specs").rglob("*.toml"))


def compile_all(repeats: int) -> tuple[dict, dict, int, list[str]]:
    """({"wall", "cpu"} compile times, the same for `xspec plan`, nodes, failures), each time
    over all specs."""
    from typer.testing import CliRunner

    from xspec.cli import app
    from xspec.study import open_study

    runner, workspace = CliRunner(), tempfile.mkdtemp(prefix="xspec-bench-plan-")
    compile_times, plan_times = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}
    nodes, failed = 0, []
    try:
        for _ in range(repeats):
            start, cpu, nodes = time.perf_counter(), time.process_time(), 0
            for path in specs():
                try:
                    nodes += len(open_study(path).plan.nodes)
                except Exception as exc:  # report and go on; the figure says how many failed
                    failed.append(f"{path.relative_to(ROOT)}: {exc}")
            compile_times["wall"].append(time.perf_counter() - start)
            compile_times["cpu"].append(time.process_time() - cpu)
            start, cpu = time.perf_counter(), time.process_time()
            for path in specs():
                runner.invoke(app, ["plan", str(path), "-w", workspace])
            plan_times["wall"].append(time.perf_counter() - start)
            plan_times["cpu"].append(time.process_time() - cpu)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return compile_times, plan_times, nodes, sorted(set(failed))


def import_time(repeats: int) -> float:
    """Cumulative import time of xspec.cli in a fresh interpreter, from -X importtime (s)."""
    seen = []
    for _ in range(repeats):
        out = subprocess.run([PYTHON, "-X", "importtime", "-c", "import xspec.cli"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stderr
        seen.append(int(IMPORT_LINE.search(out).group(1)) / 1e6)
    return median(seen)


def child_times(command: list[str], repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of a command run as a new process."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, cwd=ROOT)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return median(walls), median(cpus)


def torch_imported(cmd: str) -> bool:
    out = subprocess.run([PYTHON, "-c", TORCH_PROBE.format(cmd=cmd)], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"xspec {cmd} specs/quickstart.toml exited with {out[0]}")
    return out[1] == "True"


def main() -> None:
    parser = cli(__doc__.splitlines()[0],
                 repeats={"type": int, "default": 5, "help": "repetitions (medians)"})
    args = parser.parse_args()
    figures = Figures("compiler")
    tmp = Path(tempfile.mkdtemp(prefix="xspec-bench-compiler-"))
    os.environ.update(placeholder_env(tmp))
    try:
        compile_times, plan_times, nodes, failed = compile_all(args.repeats)
        print(f"compiler: {len(specs())} specs, {nodes} nodes")
        for line in failed:
            print(f"  could not compile {line}")
        n = len(specs())
        warm = {k: median(v[1:] or v) for k, v in compile_times.items()}
        figures.add(f"compile all {n} specs (open_study, warm), wall s", warm["wall"], " s",
                    ("<", 1.0), note=f"{nodes} nodes; first call {compile_times['wall'][0]:.2f} s"
                    + (f"; {len(failed)} spec(s) failed" if failed else ""))
        figures.add(f"compile all {n} specs, CPU s", warm["cpu"], " s", ("<", 1.0))
        plan = {k: median(v[1:] or v) for k, v in plan_times.items()}
        figures.add(f"`xspec plan` on all {n} specs in-process, wall s", plan["wall"], " s",
                    ("<", 1.0), note="compile + table + workspace state")
        figures.add(f"`xspec plan` on all {n} specs in-process, CPU s", plan["cpu"], " s",
                    ("<", 1.0))
        biggest = max(specs(), key=lambda p: p.stat().st_size)
        wall, cpu = child_times([XSPEC, "plan", str(biggest), "-w", str(tmp / "ws")],
                                args.repeats)
        figures.add(f"`xspec plan {biggest.relative_to(ROOT)}` as a new process, wall s", wall,
                    " s", note=f"CPU {cpu:.2f} s")
        figures.add("import xspec.cli (-X importtime, cumulative), s", import_time(args.repeats),
                    " s", ("<", 0.5))
        bare_wall, bare_cpu = child_times([PYTHON, "-c", "pass"], args.repeats)
        wall, cpu = child_times([XSPEC, "--help"], args.repeats)
        figures.add("`xspec --help` as a new process, wall s", wall, " s", ("<", 0.5),
                    note=f"bare interpreter: {bare_wall:.2f} s")
        figures.add("`xspec --help` as a new process, CPU s", cpu, " s", ("<", 0.5),
                    note=f"bare interpreter: {bare_cpu:.2f} s")
        probe = ROOT / "specs" / "quickstart.toml"
        if probe.exists():
            for cmd in ("validate", "plan", "status"):
                figures.add(f"torch imported by `xspec {cmd}`", torch_imported(cmd), "",
                            ("==", False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
