"""Issue 11's figures, one probe per item: wrong labels, diverged models, kills during the first
ingest, concurrent commands, markup, early validation and plan scale.

    .venv/bin/python bench/reliability2.py [--only labels,nan,kills,concurrent,markup,validate,scale]

Prints one line per figure with its goal (zero tracebacks, zero nodes run twice, zero unusable
workspaces). Takes a few minutes on 2 cores (the concurrent probe trains a tiny study twice).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY = """
[study]
name = "{name}"
[data]
train = {{ format = "fashion_mnist", size = 256 }}
clean = {{ size = 64 }}
eval = {{ format = "fashion_mnist", split = "test", size = 64 }}
[attack]
kind = "badnet"
target = "bag"
poisons = 8
[model]
arch = "xspec-vit-micro"
[pretrain]
objective = "mmcl"
epochs = 2
batch_size = 64
warmup_steps = 2
[clean]
objective = "mmcl"
lr = [1e-4, 1e-3]
epochs = 2
batch_size = 64
warmup_steps = 1
[run]
threads = 1
"""


def _xspec(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xspec.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def labels() -> str:
    """ImageFolder sets with folders in shuffled order, some misnamed: labels by name or refused."""
    import numpy as np
    from PIL import Image

    from xspec.errors import DataError
    from xspec.runtime.data import open_eval
    from xspec.spec.classes import read_classes

    classes = read_classes("fashion_mnist")
    rng, tried, right, refused, tracebacks = random.Random(0), 0, 0, 0, 0
    for trial in range(20):
        with tempfile.TemporaryDirectory() as tmp:
            names = rng.sample(classes, 5)
            folders = [n.replace(" ", rng.choice(["_", " "])).upper() if rng.random() < 0.3
                       else n.replace(" ", "_") for n in names]
            bad = trial % 4 == 0
            if bad:
                folders[0] = folders[0] + "s"
            for i, folder in enumerate(folders):
                (Path(tmp) / folder).mkdir()
                Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(Path(tmp) / folder / "0.png")
            tried += 1
            try:
                data = open_eval({"format": "imagefolder", "path": tmp,
                                  "classes": "fashion_mnist", "size": None}, 8)
            except DataError:
                refused += bad
                continue
            except Exception:  # noqa: BLE001 - counting tracebacks is the point
                tracebacks += 1
                continue
            got = {Path(p).parent.name: classes[y] for p, y in zip(data.images.paths, data.labels)}
            right += all(got[f] == n for f, n in zip(folders, names)) and not bad
    expected_bad = sum(t % 4 == 0 for t in range(20))
    return (f"imagefolder labels: {tried} shuffled layouts tried, {right} of "
            f"{tried - expected_bad} labelled by folder name, {refused} of {expected_bad} with a "
            f"folder naming no class refused, {tracebacks} tracebacks (goal all, all, 0)")


def nan_models() -> str:
    """Weights overflowing at every step position: never evaluated or saved."""
    import torch

    from xspec.runtime.loop import train
    from xspec.runtime.train import NonFiniteLoss, TrainState
    from xspec.spec.tables.training import Training

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import Batches, Tiny

    tried = caught = evaluated_nan = 0
    for at in range(1, 10):
        model = Tiny()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        step, calls = optimizer.step, [0]

        def overflow(*args, model=model, step=step, calls=calls, at=at, **kwargs):
            step(*args, **kwargs)
            calls[0] += 1
            if calls[0] == at:
                with torch.no_grad():
                    model.image.weight.view(-1)[0] = float("inf")

        optimizer.step = overflow

        def on_epoch_end(state, losses, model=model):
            nonlocal evaluated_nan
            evaluated_nan += not all(bool(torch.isfinite(p).all()) for p in model.parameters())

        tried += 1
        try:
            train(Training(objective="mmcl", epochs=3, lr=0.1, warmup_steps=0), model, Batches(3), optimizer,
                  TrainState(), on_epoch_end, torch.device("cpu"))
        except NonFiniteLoss:
            caught += 1
    return (f"diverged models: {tried} overflow points tried, {caught} failed their node, "
            f"{evaluated_nan} non-finite models evaluated or saved (goal all, 0)")


KILL_AT = """
import os, signal, sys
import duckdb
n = int(sys.argv[2])
real = duckdb.DuckDBPyConnection.execute
calls = [0]
def execute(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)
duckdb.DuckDBPyConnection.execute = execute
from xspec.store.db import connect
with connect(sys.argv[1]) as con:
    con.execute("INSERT INTO studies VALUES ('s', 'p', '{}', now())")
"""


def kills() -> str:
    """kill -9 at every statement of the first ingest's schema creation."""
    from xspec.store.db import connect

    tried = usable = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(1, 100):
            path = Path(tmp) / f"{n}.duckdb"
            proc = subprocess.run([sys.executable, "-c", KILL_AT, str(path), str(n)], cwd=ROOT,
                                  capture_output=True)
            if proc.returncode != -signal.SIGKILL:
                break  # past the last statement: nothing left to kill
            tried += 1
            try:
                with connect(path, wait=5) as con:
                    con.execute("SELECT count(*) FROM studies, nodes, metrics, checkpoints")
                    con.execute("INSERT INTO studies VALUES ('s', 'p', '{}', now())")
                    usable += 1
            except Exception:  # noqa: BLE001 - an unusable workspace is what we count
                pass
    return (f"kills during the first ingest: {tried} kill -9 points tried (before each "
            f"statement), {usable} workspaces usable afterwards (goal {tried})")


def _starts(workspace: Path) -> dict[str, int]:
    return {log.parent.name: log.read_text().count(" started (pid ")
            for log in workspace.glob("runs/*/log.txt")}


def concurrent() -> str:
    """Two `xspec run` of one spec at once, then two `xspec report` while a reader holds the
    database."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, ws = Path(tmp) / "c.toml", Path(tmp) / "ws"
        spec.write_text(TINY.format(name="concurrent"))
        procs = [_xspec("run", str(spec), "-w", str(ws)) for _ in range(2)]
        outs = [p.communicate() for p in procs]
        starts = _starts(ws)
        twice = sum(count > 1 for count in starts.values())
        tracebacks = sum("Traceback" in err for _, err in outs)
        waited = sum("waiting" in out for out, _ in outs)
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time; from xspec.store.results import results; r = results(sys.argv[1]);"
            " print('ready', flush=True); time.sleep(4)"), str(ws)], cwd=ROOT,
            stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()
        reports = [_xspec("report", str(spec), "-w", str(ws)) for _ in range(2)]
        report_outs = [p.communicate() for p in reports]
        holder.wait()
        tracebacks += sum("Traceback" in err for _, err in report_outs)
        codes = [p.returncode for p in procs + reports]
    return (f"concurrent commands: 2 `xspec run` + 2 `xspec report` (with a notebook holding the "
            f"database), {len(starts)} nodes, {twice} run twice, {waited} run(s) said they waited, "
            f"exit codes {codes}, {tracebacks} tracebacks (goal 0 twice, all exit 0, 0 tracebacks)")


def _cli(*args: str) -> tuple[int, str]:
    """Run the CLI in-process as `xspec ARGS`; (exit code, stderr), or (-1, traceback)."""
    from xspec.cli import main

    argv, err = sys.argv, io.StringIO()
    sys.argv = ["xspec", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    except Exception:  # noqa: BLE001
        import traceback

        return -1, traceback.format_exc()
    finally:
        sys.argv = argv
    return 0, err.getvalue()


def markup() -> str:
    """Paths and messages with [...] through validate, plan and status."""
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    tried = tracebacks = lost = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, parts in enumerate([["a [", "b]"], ["[", "red]"], ["x [bold]"], ["[link=x]"],
                                   ["y [", "]"]]):
            folder = Path(tmp, str(i), *parts)
            folder.mkdir(parents=True)
            spec = folder / "s.toml"
            spec.write_text(TINY.format(name=f"m{i}"))
            ws = Workspace(folder / "ws")
            first = open_study(spec).plan.ordered()[0]
            ws.prepare(first).set_status("failed", error="got [nan, 1.0] [/red]")
            for command in (["validate", str(spec)], ["plan", str(spec), "-w", str(ws.root)],
                            ["status", str(spec), "-w", str(ws.root)]):
                tried += 1
                code, err = _cli(*command)
                tracebacks += code == -1 or "Traceback" in err
            bad = folder / "bad.toml"
            bad.write_text(TINY.format(name=f"m{i}").replace("epochs = 2", "epochs = [[1]]", 1))
            tried += 1
            code, err = _cli("validate", str(bad))
            tracebacks += code == -1
            lost += str(bad) not in " ".join(err.split()).replace(" ", "") and \
                str(bad).replace(" ", "") not in err.replace(" ", "").replace("\n", "")
    return (f"markup: {tried} commands on bracketed paths and messages, {tracebacks} tracebacks, "
            f"{lost} messages that lost text (goal 0, 0)")


BAD_VALUES = [
    ("lr = [1e-4, 1e-3]", "lr = inf"), ("[clean]\n", "[clean]\nweight_decay = inf\n"),
    ("[clean]\n", "[clean]\nssl_weight = inf\n"), ("[pretrain]\n", "[pretrain]\nlr = nan\n"),
    ('name = "{name}"', 'name = "{name}"\nseed = 18446744073709551616'),
    ("epochs = 2\nbatch_size = 64\nwarmup_steps = 1", "epochs = true\nbatch_size = 64"),
    ("[clean]\n", "[evaluate]\nmetrics = []\n[clean]\n"),
    ("[clean]\n", '[evaluate]\nmetrics = ["asr"]\n[clean]\n'),
    ("poisons = 8", "poisons = 300"), ("poisons = 8", "poisons = 8\ntrigger = { size = 40 }"),
    ('name = "{name}"', 'name = "index.html"'), ("arch = ", 'init = "."\narch = '),
    ("batch_size = 64", "batch_size = 1e400"), ("poisons = 8", "poisons = -1"),
    ("epochs = 2", 'epochs = "${XSPEC_UNSET_VAR}"'),
]


def validate() -> str:
    """Bad values, non-UTF-8 files and bad labels: each a one-line error naming where."""
    from xspec.errors import XspecError
    from xspec.runtime.data import open_eval, open_pairs

    tried = clean = tracebacks = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = TINY.format(name="{name}")
        for i, (old, new) in enumerate(BAD_VALUES):
            spec = Path(tmp) / f"v{i}.toml"
            spec.write_text(base.replace(old, new, 1).replace("{name}", f"v{i}"))
            tried += 1
            code, err = _cli("validate", str(spec))
            tracebacks += code == -1 or "Traceback" in err
            clean += code == 1 and err.startswith("error: ")
        latin = Path(tmp) / "latin.toml"
        latin.write_bytes(TINY.format(name="l").replace("[model]", "# caf\xe9\n[model]")
                          .encode("latin-1"))
        tried += 1
        code, err = _cli("validate", str(latin))
        tracebacks += code == -1
        clean += code == 1 and "line " in err
        files = {"captions": ("image,caption\na.png,caf\xe9\n", "pairs"),
                 "label bag": ("image,label\na.png,bag\n", "eval"),
                 "label 3.0": ("image,label\na.png,3.0\n", "eval"),
                 "labels latin-1": ("image,label\na.png,1\n\xe9.png,2\n", "eval")}
        for name, (text, kind) in files.items():
            path = Path(tmp) / f"{name}.csv"
            path.write_bytes(text.encode("latin-1"))
            tried += 1
            try:
                if kind == "pairs":
                    open_pairs({"format": "csv", "path": str(path), "image_key": "image",
                                "caption_key": "caption"}, 8)
                else:
                    open_eval({"format": "labels_csv", "path": str(path), "image_key": "image",
                               "label_key": "label", "classes": "fashion_mnist"}, 8)
            except XspecError as exc:
                clean += f"{path}: line " in str(exc)
            except Exception:  # noqa: BLE001
                tracebacks += 1
    return (f"bad inputs: {tried} tried (values, non-UTF-8 specs/captions/labels, non-integer "
            f"labels), {clean} clean errors naming key or file and line, {tracebacks} tracebacks "
            f"(goal all, 0)")


def scale(nodes: int = 10_050) -> str:
    """Time to the first node of a 10 k-node plan (just over the warning threshold), writing node files as nodes start vs all
    before the first (the old behaviour), measured side by side."""
    from xspec.executors.base import pending, prepare
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    lrs = ", ".join(f"{(i + 1) * 1e-7:.3e}" for i in range(nodes - 3))
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "big.toml"
        spec.write_text(TINY.format(name="big").replace("lr = [1e-4, 1e-3]", f"lr = [{lrs}]"))
        started = time.perf_counter()
        study = open_study(spec)
        planned = time.perf_counter() - started
        warned = any(n.startswith("large plan") for n in study.plan.notes)
        started = time.perf_counter()
        first = pending(Workspace(Path(tmp) / "new"), study.plan)[0]
        Workspace(Path(tmp) / "new").prepare(first)
        new = time.perf_counter() - started
        started = time.perf_counter()
        prepare(Workspace(Path(tmp) / "old"), study.plan)
        old = time.perf_counter() - started
        files = len(list((Path(tmp) / "new").glob("runs/*/node.json")))
    return (f"plan scale: {len(study.plan.nodes)} nodes planned in {planned:.1f} s, warning "
            f"{'printed' if warned else 'MISSING'}; first node ready after {new:.2f} s with "
            f"{files} node.json written (all up front: {old:.1f} s, ratio {old / new:.0f}x; "
            f"machine loaded)")


PROBES = {"labels": labels, "nan": nan_models, "kills": kills, "concurrent": concurrent,
          "markup": markup, "validate": validate, "scale": scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PROBES))
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("XSPEC_DB_WAIT", "60")
    for name in args.only.split(","):
        print(PROBES[name](), flush=True)


if __name__ == "__main__":
    main()
