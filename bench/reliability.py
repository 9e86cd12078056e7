"""Issue 6's figures: fuzzed specs, kill-and-resume cycles, concurrent finishes, bad images.

    .venv/bin/python bench/reliability.py [--kills 10]

Prints one line per figure with its goal. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
KILL_SPEC = """
[study]
name = "kill-cycles"
[data]
train = {{ format = "fashion_mnist", size = 1024 }}
clean = {{ size = 256 }}
eval = {{ format = "fashion_mnist", split = "test", size = 64 }}
[attack]
kind = "badnet"
target = "bag"
poisons = 10
[model]
arch = "xspec-vit-micro"
[pretrain]
objective = "mmcl+ssl"
epochs = {epochs}
batch_size = 64
warmup_steps = 2
[clean]
lr = [1e-4, 1e-3]
epochs = {epochs}
batch_size = 64
warmup_steps = 1
[run]
threads = 1
"""


def fuzz() -> str:
    out = subprocess.run([sys.executable, "-m", "pytest", "tests/spec/test_fuzz.py", "-s", "-q",
                          "-o", "addopts=", "--import-mode=importlib"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    match = re.search(r"fuzzed specs: (\d+) tried, (\d+) clean errors, (\d+) valid", out)
    tried, errors, valid = map(int, match.groups()) if match else (0, 0, 0)
    tracebacks = tried - errors - valid if match else "?"
    return f"fuzzed specs: {tried} tried, {errors} clean errors, {valid} valid, " \
           f"{tracebacks} tracebacks (goal 0)"


def _xspec(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xspec.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _running_pids(workspace: Path) -> list[int]:
    pids = []
    for path in workspace.glob("runs/*/status.json"):
        status = json.loads(path.read_text())
        if status.get("state") == "running":
            pids.append(int(status["pid"]))
    return pids


def kill_cycles(kills: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        spec, workspace = Path(tmp) / "kill.toml", Path(tmp) / "ws"
        epochs = 12
        spec.write_text(KILL_SPEC.format(epochs=epochs))
        survived = 0
        while survived < kills:
            proc = _xspec("run", str(spec), "-w", str(workspace))
            time.sleep(rng.uniform(0.5, 8.0))
            while not _running_pids(workspace) and proc.poll() is None:
                time.sleep(0.1)  # between two nodes: kill the next one once it runs
            pids = _running_pids(workspace)
            if proc.poll() is not None:
                break  # the study finished before this kill point
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                survived += 1
            proc.wait()
        final = _xspec("run", str(spec), "-w", str(workspace))
        final.wait()
        con = duckdb.connect(str(workspace / "xspec.duckdb"), read_only=True)
        dupes = con.execute("""SELECT count(*) FROM (SELECT node_id, epoch, split, metric
            FROM metrics GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0]
        per_kind = dict(con.execute("""SELECT n.kind, count(*) FROM metrics m JOIN nodes n
            ON n.id = m.node_id WHERE m.split = 'eval' AND m.metric = 'top1'
            GROUP BY 1""").fetchall())
        expected = {"pretrain": epochs, "select": 1, "clean": 2 * (epochs + 1)}
        lost = sum(max(0, expected[k] - per_kind.get(k, 0)) for k in expected)
        return (f"kill -9 cycles: {survived} random kill points survived, final run exit "
                f"{final.returncode}, {lost} lost and {dupes} duplicated metric rows (goal >= 10 "
                f"kills, 0 lost, 0 duplicated)")


def _finish(args) -> None:
    run_dir, node_id, epochs = args
    from xspec.runtime.records import MetricsLog
    from xspec.store.workspace import RunDir

    run = RunDir(Path(run_dir))
    log = MetricsLog(run.metrics_file, node_id)
    for epoch in range(epochs + 1):
        for metric in ("top1", "top5", "asr"):
            log.add(epoch, "eval", metric, random.random(), 1000, epoch)
    log.flush()
    run.set_status("done")


def concurrent_finishes(n: int = 20, epochs: int = 20) -> str:
    from xspec.store.db import ingest
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    text = (ROOT / "specs/toy/mini.toml").read_text().replace(
        "lr = [1e-4, 1e-3]", "lr = [" + ", ".join(f"{(i + 1) * 1e-5:.1e}" for i in range(n // 2)) + "]")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.toml").write_text(text)
        study, workspace = open_study(Path(tmp) / "s.toml"), Workspace(Path(tmp) / "ws")
        cleans = study.plan.of_kind("clean")
        for node in study.plan.ordered():
            workspace.prepare(node)
        with mp.get_context("spawn").Pool(n) as pool:
            pool.map(_finish, [(str(workspace.run_dir(c).path), c.id, epochs) for c in cleans])
        first = ingest(workspace, study.plan)
        second = ingest(workspace, study.plan)
        expected = len(cleans) * (epochs + 1) * 3
        return (f"concurrent finishes: {len(cleans)} nodes finished at once, {first} rows "
                f"ingested of {expected} expected, re-ingest {second} (goal 20 nodes, 0 lost, "
                f"idempotent)")


def bad_images(n_bad: int = 7, n: int = 200) -> str:
    import numpy as np
    from PIL import Image

    from xspec.runtime.data import open_pairs
    from xspec.store.workspace import Workspace
    from xspec.study import open_study, run_study

    pairs = open_pairs({"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
                        "split": "train", "size": n}, 28)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        broken = set(random.Random(1).sample(range(n), n_bad))
        rows = ["image,caption"]
        for i, caption in enumerate(pairs.captions):
            if i in broken:
                (root / f"img/{i}.jpg").write_bytes(b"\xff\xd8 truncated")
            else:
                Image.fromarray(pairs.images.pixels[i].permute(1, 2, 0).numpy().astype(np.uint8)
                                ).save(root / f"img/{i}.jpg")
            rows.append(f'img/{i}.jpg,"{caption}"')  # captions hold commas
        (root / "train.csv").write_text("\n".join(rows) + "\n")
        (root / "s.toml").write_text(f"""
[study]
name = "bad"
[data]
train = {{ format = "csv", path = "train.csv" }}
eval = {{ format = "fashion_mnist", split = "test", size = 32 }}
max_bad_fraction = 0.1
[attack]
kind = "none"
[model]
arch = "xspec-vit-micro"
[pretrain]
epochs = 1
batch_size = {n}
""")
        study, workspace = open_study(root / "s.toml"), Workspace(root / "ws")
        run_study(study, workspace, "debug")
        counted = workspace.run_dir(study.plan.of_kind("pretrain")[0]).status().get(
            "bad_train_images")
        return f"bad images: {n_bad} injected, {counted} counted in status.json (goal equal)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    os.chdir(ROOT)
    for figure in (fuzz, lambda: kill_cycles(args.kills), concurrent_finishes, bad_images):
        print(figure(), flush=True)


if __name__ == "__main__":
    main()
