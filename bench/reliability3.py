"""Issue 19's figures: the hostile-user and unlucky-cluster cases, by family, each through the
`xspec` command as a user types it.

    .venv/bin/python bench/reliability3.py [--only security,inputs,endings,damage,twice]

Each family prints: cases tried / clean errors (or recoveries) / tracebacks / rows lost, with
the goal (all clean, 0 tracebacks, 0 rows lost). `damage` trains a tiny study once for its
reference rows, then damages copies of that workspace (deleted or garbled per-node files, a
killed epoch whose metrics are then lost, a 0-byte database, a moved workspace) and compares
every rerun's rows with the reference. About 10 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reliability2 import TINY  # noqa: E402


class Tally:
    def __init__(self, family: str):
        self.family, self.tried, self.clean, self.tracebacks, self.lost = family, 0, 0, 0, 0
        self.notes: list[str] = []

    def case(self, name: str, proc: subprocess.CompletedProcess | None, ok: bool,
             lost: int = 0) -> None:
        self.tried += 1
        text = "" if proc is None else proc.stdout + proc.stderr
        traceback = "Traceback" in text
        self.tracebacks += traceback
        self.lost += lost
        self.clean += ok and not traceback and not lost
        if not ok or traceback or lost:
            last = text.strip().splitlines()[-1:] if text.strip() else ["(no output)"]
            self.notes.append(f"  {name}: {'traceback' if traceback else 'not clean'}"
                              f"{f', {lost} rows lost' if lost else ''}: {last[0][:160]}")

    def line(self) -> str:
        return "\n".join([f"{self.family}: {self.tried} cases tried, {self.clean} clean errors or "
                          f"recoveries, {self.tracebacks} tracebacks, {self.lost} rows lost "
                          f"(goal {self.tried}, 0, 0)", *self.notes])


def xspec(*args, cwd=ROOT, timeout=900, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xspec.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kwargs)


def one_error(proc: subprocess.CompletedProcess, *needles: str) -> bool:
    """Exit 1 and an `error:` line holding every needle."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr)  # colours, when forced
    errors = [line for line in plain.splitlines() if line.startswith("error:")]
    return proc.returncode == 1 and bool(errors) and all(
        any(n in line for line in errors) for n in needles)


def _spec(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def security() -> str:
    tally = Tally("security")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = TINY.format(name="sec")
        for key, value in [("partition", '"cpu\\ntouch /tmp/x #"'), ("account", '"a\\rb"'),
                           ("qos", '"q\\u001b[2J"'),
                           ("additional", '{ comment = "x\\ntouch /tmp/x" }'),
                           ("additional", '{ "x\\ntouch /tmp/x #" = "1" }')]:
            spec = _spec(tmp, "cluster", base + f"\n[cluster]\n{key} = {value}\n")
            proc = xspec("submit", spec, "-w", tmp / "ws", env={"PATH": os.environ["PATH"]})
            tally.case(f"cluster {key}", proc, one_error(proc, f"slurm option '{key}'"))
        cwd = tmp / "cwd"
        cwd.mkdir()
        marker = tmp / "imported"
        (cwd / "json.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nfrom _json import *\n")
        spec = _spec(tmp, "cwd", base.replace("epochs = 2", "epochs = 1"))
        study_ws = tmp / "ws-cwd"
        proc = subprocess.run([sys.executable, "-P", "-c", (
            "import sys; from xspec.study import open_study; "
            "from xspec.store.workspace import Workspace; "
            "from xspec.executors.local import LocalExecutor; "
            "s = open_study(sys.argv[1]); n = s.plan.of_kind('poison')[0]; "
            "w = Workspace(sys.argv[2]); w.prepare(n); "
            "c = type('C', (), {'set_worker': lambda self, pid: None})(); "
            "p, e = LocalExecutor._start(w, [n], {'threads': 1}, {n.id: c}); "
            "sys.exit(p.wait())"), str(spec), str(study_ws)], cwd=cwd, capture_output=True,
            text=True, timeout=600)
        tally.case("json.py in the cwd", proc, proc.returncode == 0 and not marker.exists())
        secret = tmp / "secret.env"
        secret.write_text("API_KEY=hunter2\n")
        spec = _spec(tmp, "leak", base.replace(
            'eval = { format = "fashion_mnist", split = "test", size = 64 }',
            f'eval = {{ format = "imagefolder", path = "{tmp}", classes = "{secret}" }}'))
        proc = xspec("validate", spec)
        tally.case("class list from an env file", proc,
                   one_error(proc, "1 classes listed in") and "hunter2" not in proc.stderr)
        spec = _spec(tmp, "esc", base.replace("[model]", '[model]\n"\\u001b]0;x\\u0007k" = 1'))
        proc = xspec("validate", spec, env={"FORCE_COLOR": "1"})
        tally.case("escape sequence in a key", proc,
                   one_error(proc, "unknown key") and "\x1b]0" not in proc.stderr)
    return tally.line()


def inputs() -> str:
    tally = Tally("inputs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = TINY.format(name="inp")
        fifo = tmp / "fifo.toml"
        os.mkfifo(fifo)
        cases = [("FIFO spec", ["plan", fifo], "not a regular file"),
                 ("/dev/zero spec", ["plan", "/dev/zero"], "not a regular file")]
        lrs = ", ".join(f"{i}e-7" for i in range(1, 1001))
        epochs = ", ".join(map(str, range(1, 1001)))
        cases.append(("10^6-point sweep", ["plan", _spec(tmp, "sweep", base.replace(
            "lr = [1e-4, 1e-3]\nepochs = 2", f"lr = [{lrs}]\nepochs = [{epochs}]"))],
            "sweep of 1,000,000 points"))
        cases.append(("/dev/zero class list", ["validate", _spec(tmp, "zero", base.replace(
            'eval = { format = "fashion_mnist", split = "test", size = 64 }',
            f'eval = {{ format = "imagefolder", path = "{tmp}", classes = "/dev/zero" }}'))],
            "not a regular file"))
        cases.append(("/dev/zero cross-study spec", ["plan", _spec(tmp, "cross", base.replace(
            '[model]\narch = "xspec-vit-micro"',
            '[model]\narch = "xspec-vit-micro"\ninit = { study = "/dev/zero" }'))],
            "not a regular file"))
        for depth in (100, 5000):
            cases.append((f"nesting {depth} deep", ["validate", _spec(tmp, f"deep{depth}", base
                          + "notes = " + "[" * depth + "]" * depth + "\n")], "nest"))
        big = tmp / "big.toml"
        big.write_bytes(b"#" * (8 * 2**20))
        cases.append(("8 MB spec", ["validate", big], "larger than"))
        dup = tmp / "dup.txt"
        dup.write_text("bag\ncoat\nbag\n")
        cases.append(("duplicate class names", ["validate", _spec(tmp, "dup", base.replace(
            'eval = { format = "fashion_mnist", split = "test", size = 64 }',
            f'eval = {{ format = "imagefolder", path = "{tmp}", classes = "{dup}" }}'))],
            "name the same class"))
        for name, args, needle in cases:
            started = time.monotonic()
            try:
                proc = xspec(*args, timeout=120)
            except subprocess.TimeoutExpired:
                tally.case(name, None, False)
                continue
            tally.case(f"{name} ({time.monotonic() - started:.1f} s)", proc,
                       one_error(proc, needle))
        from PIL import Image

        images = tmp / "images"
        images.mkdir()
        rows = ["image,caption"]
        for i in range(4):
            Image.new("RGB", (16, 16), "red").save(images / f"{i}.png")
            rows.append(f"{images / f'{i}.png'},a photo of a bag")
        Image.new("1", (20000, 20000)).save(images / "bomb.png")
        rows.append(f"{images / 'bomb.png'},a photo of a bag")
        (tmp / "pairs.csv").write_text("\n".join(rows) + "\n")
        spec = _spec(tmp, "bomb", base.replace(
            'train = { format = "fashion_mnist", size = 256 }',
            f'train = {{ format = "csv", path = "{tmp / "pairs.csv"}" }}'))
        proc = xspec("data", "check", spec, timeout=300)
        tally.case("decompression bomb", proc, "bad images 1" in proc.stdout)
        spec = _spec(tmp, "env", base.replace('name = "inp"', 'name = "${XSPEC_B3_A:-${XSPEC_B3_B}}"'))
        proc = xspec("validate", spec, env={"XSPEC_B3_B": "nested"})
        tally.case("${A:-${B}}", proc, proc.returncode == 0 and "'nested'" in proc.stdout)
    return tally.line()


QUITS = "import sys\nsys.exit(3)\n"


def endings() -> str:
    tally = Tally("endings")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = TINY.format(name="end")
        spec = _spec(tmp, "end", base)
        empty = tmp / "bin"
        empty.mkdir()
        proc = xspec("submit", spec, "-w", tmp / "ws", env={"PATH": str(empty)})
        tally.case("submit without SLURM", proc, one_error(proc, "needs a SLURM login node"))
        (tmp / "quits.py").write_text(QUITS)
        plugin = _spec(tmp, "plugin", base.replace('name = "end"', 'name = "end"\nplugins = ["quits"]'))
        proc = xspec("validate", plugin)
        tally.case("plugin sys.exit(3)", proc, one_error(proc, "called sys.exit(3)"))
        proc = subprocess.Popen([sys.executable, "-m", "xspec.cli", "run", str(spec), "-w",
                                 str(tmp / "ws")], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(8)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        tally.case("Ctrl-C", done, proc.returncode == 130 and "interrupted: " in err)
        for name, content in [("report, read-only workspace", None),
                              ("report, read-only workspace with a database", b"")]:
            source, readonly = tmp / "ro-source", tmp / "ro"
            source.mkdir()
            readonly.mkdir()
            if content is not None:
                xspec("report", spec, "-w", source)
            if subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(readonly)],
                              capture_output=True).returncode != 0:
                tally.notes.append(f"  {name}: skipped (needs root for a read-only mount)")
                continue
            subprocess.run(["mount", "-o", "remount,ro,bind", str(readonly)], check=True)
            try:
                proc = xspec("report", spec, "-w", readonly, env={"XSPEC_DB_WAIT": "1"})
            finally:
                subprocess.run(["umount", str(readonly)], check=True)
            tally.case(name, proc, one_error(proc, "read-only"))
            shutil.rmtree(source)
            readonly.rmdir()
    return tally.line()


def rows_of(workspace: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    found = {}
    for path in sorted(workspace.glob("runs/*/metrics.parquet")):
        rows = [r for r in pq.read_table(path).to_pylist() if r["split"] != "perf"]
        found[path.parent.name] = sorted((r["epoch"], r["split"], r["metric"], r["value"], r["n"],
                                          r["step"]) for r in rows)
    return found


def lost(reference: dict, workspace: Path) -> int:
    got = rows_of(workspace)
    return sum(len(set(rows) - set(got.get(name, []))) for name, rows in reference.items())


def _node(workspace: Path, kind: str) -> Path:
    return sorted(workspace.glob(f"runs/{kind}-*"))[0]


def _kill_after_epoch(spec: Path, workspace: Path, run: Path) -> None:
    """Run until `run` has finished its first epoch (last.pt written), then kill -9."""
    proc = subprocess.Popen([sys.executable, "-m", "xspec.cli", "run", str(spec), "-w",
                             str(workspace)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (run / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def damage() -> str:
    tally = Tally("damage")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = _spec(tmp, "dmg", TINY.format(name="dmg"))
        ref = tmp / "ref"
        proc = xspec("run", spec, "-w", ref)
        if proc.returncode != 0:
            return f"damage: the reference run failed: {proc.stderr.strip()[-300:]}"
        reference = rows_of(ref)

        def case(name, harm, check=None):
            ws = tmp / name.replace(" ", "-").replace("/", "-")
            shutil.copytree(ref, ws)
            harm(ws)
            proc = xspec("run", spec, "-w", ws, env={"XSPEC_LOCK_STALE": "5"})
            again = xspec("status", spec, "-w", ws)
            ok = proc.returncode == 0 and again.returncode == 0 and (check is None or check(ws))
            tally.case(name, proc, ok, lost(reference, ws))
            shutil.rmtree(ws)

        case("metrics.parquet of a done node deleted",
             lambda ws: (_node(ws, "clean") / "metrics.parquet").unlink())
        case("metrics.parquet of a done node garbled",
             lambda ws: (_node(ws, "pretrain") / "metrics.parquet").write_bytes(b"PAR1 junk"))
        for content in (b"", b"{garbage"):
            case(f"status.json {'empty' if not content else 'garbage'}",
                 lambda ws, c=content: (_node(ws, "clean") / "status.json").write_bytes(c))
            case(f"lock.json {'empty' if not content else 'garbage'} on a pending node",
                 lambda ws, c=content: _pending_with_lock(ws, c))
        case("node.json truncated (pending node)", _truncated_node_json)
        case("xspec.duckdb 0 bytes", lambda ws: (ws / "xspec.duckdb").write_bytes(b""),
             lambda ws: (ws / "reports").exists())
        case("xspec.duckdb garbage", lambda ws: (ws / "xspec.duckdb").write_bytes(b"x" * 9000))

        def moved(ws):
            ws.rename(ws.with_name("moved-away"))
            ws.mkdir()
            shutil.copytree(ws.with_name("moved-away"), ws, dirs_exist_ok=True)
            shutil.rmtree(ws.with_name("moved-away"))
        wider = _spec(tmp, "wider", TINY.format(name="dmg").replace("lr = [1e-4, 1e-3]",
                                                                      "lr = [1e-4, 1e-3, 3e-4]"))
        ws = tmp / "moved"
        shutil.copytree(ref, ws)
        shutil.move(str(ref), str(tmp / "ref-moved"))  # the original is gone: the copy reads its own
        proc = xspec("run", wider, "-w", ws)
        tally.case("moved workspace + a learning rate", proc, proc.returncode == 0,
                   lost(reference, ws))
        shutil.move(str(tmp / "ref-moved"), str(ref))
        shutil.rmtree(ws)
        for name, harm in [("epoch interrupted, then metrics.parquet deleted",
                            lambda run: (run / "metrics.parquet").unlink(missing_ok=True)),
                           ("epoch interrupted, then last.pt truncated",
                            lambda run: (run / "checkpoints" / "last.pt").write_bytes(
                                (run / "checkpoints" / "last.pt").read_bytes()[:999]))]:
            ws = tmp / "interrupted"
            shutil.copytree(ref, ws)
            run = _node(ws, "clean")
            shutil.rmtree(run)
            _kill_after_epoch(spec, ws, run)
            harm(run)
            proc = xspec("run", spec, "-w", ws, env={"XSPEC_LOCK_STALE": "5"})
            tally.case(name, proc, proc.returncode == 0, lost(reference, ws))
            shutil.rmtree(ws)
    return tally.line()


def twice() -> str:
    """lock.json deleted while a node is queued or running: a second `xspec run` must wait for
    it, not start it again (counted from the node's log: one start)."""
    tally = Tally("twice")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = _spec(tmp, "two", TINY.format(name="two"))
        ws = tmp / "ws"
        first = subprocess.Popen([sys.executable, "-m", "xspec.cli", "run", str(spec), "-w",
                                  str(ws)], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while not list(ws.glob("runs/pretrain-*/lock.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        for lock in ws.glob("runs/*/lock.json"):
            lock.unlink()
        second = xspec("run", spec, "-w", ws)
        out, err = first.communicate(timeout=900)
        starts = sum(log.read_text().count(" started (pid ") for log in ws.glob("runs/*/log.txt"))
        nodes = len(list(ws.glob("runs/*/node.json")))
        tally.case("lock.json deleted while queued/running", second,
                   first.returncode == 0 and second.returncode == 0 and starts == nodes)
        if starts != nodes:
            tally.notes.append(f"  {starts} starts for {nodes} nodes")
    return tally.line()


def _pending_with_lock(ws: Path, content: bytes) -> None:
    run = _node(ws, "clean")
    shutil.rmtree(run)
    run.mkdir()
    (run / "lock.json").write_bytes(content)


def _truncated_node_json(ws: Path) -> None:
    run = _node(ws, "clean")
    record = (run / "node.json").read_text()
    shutil.rmtree(run)
    run.mkdir()
    (run / "node.json").write_text(record[: len(record) // 2])


FAMILIES = {"security": security, "inputs": inputs, "endings": endings, "damage": damage,
            "twice": twice}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(FAMILIES))
    args = parser.parse_args()
    os.environ.setdefault("XSPEC_DB_WAIT", "60")
    for name in args.only.split(","):
        print(FAMILIES[name](), flush=True)


if __name__ == "__main__":
    main()
