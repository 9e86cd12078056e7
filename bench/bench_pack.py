"""Grid packing: a cleaning grid run packed (`[run] pack = K`) vs its points one after another.

Two grids, each timed side by side in one run (rounds alternate the order: unpacked, packed,
packed, unpacked, ...), both with the local executor (child processes, as `xspec run`) into a copy of
a workspace whose upstream nodes (poison, pretrain, select) are already done:
- jpeg224: 4 learning rates, MMCL+SSL, training and evaluation images read from JPEG files at
  224 px, `run.workers = 2`, concurrency 1, the tiny ViT (xspec-vit-tiny, 32 px: the JPEGs are
  decoded and resized to it). Goal: packed wall time <= 0.5 x the four runs one after another.
- jpeg224-model224: the same with a tiny ViT at 224 px (bench/tiny224.json, 2 layers, width 64,
  32-px patches): the model's steps, four per batch, outweigh the data work (`--profile`).
- quickstart: specs/quickstart.toml's grid (3 learning rates x 2 pre-trained models, 32 px,
  in memory), with its own [run] settings (two processes at a time, one thread each); its
  pre-training is cut to 1 epoch here (cleaning does the same work on any start).
Each round also checks that packed and unpacked runs wrote identical metric rows (all but the
loader timings, split "perf").

Usage: .venv/bin/python bench/bench_pack.py [--rounds 2] [--grids jpeg224,jpeg224-model224,quickstart] [--json out.json]
       .venv/bin/python bench/bench_pack.py --grids jpeg224 --profile
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FASHION, ROOT, Figures, cli, median  # noqa: E402

JPEG_PAIRS, JPEG_EVAL = 1024, 400
# The same grid on 224-px JPEG files with two models: xspec-vit-tiny decodes them to its 32 px
# (as bench_eval.py does), a tiny ViT at 224 px (bench/tiny224.json) trains on them at 224 px.
JPEG_GRIDS = {"jpeg224": ("xspec-vit-tiny", 4), "jpeg224-model224": ("{root}/tiny224.json", 32)}
JPEG_SPEC = """
[study]
name = "bench-pack-224"
seed = 0

[data]
train = {{ format = "csv", path = "{root}/train.csv" }}
clean = {{ size = 512, overlap = "disjoint" }}
eval = {{ format = "labels_csv", path = "{root}/eval.csv", classes = "fashion_mnist" }}

[attack]
kind = "badnet"
target = "bag"
poisons = 16
trigger = {{ size = {trigger}, pattern = "gaussian_fixed" }}

[model]
arch = "{arch}"

[pretrain]
objective = "mmcl"
epochs = 1
batch_size = 64
lr = 1e-3
warmup_steps = 2
"""
JPEG_CLEAN = """
[clean]
objective = "mmcl+ssl"
lr = [1e-5, 3e-5, 1e-4, 3e-4]
epochs = 1
batch_size = 64
warmup_steps = 2

[run]
workers = 2
threads = 2
concurrency = 1
pack = {pack}
"""


def write_jpeg_data(root: Path) -> None:
    """Fashion-MNIST pairs (web-style captions) and test images as 224-px JPEG files."""
    from PIL import Image

    from xspec.runtime.data import fashion_caption, open_eval

    for split, n, name, column in (("train", JPEG_PAIRS, "train.csv", "caption"),
                                   ("test", JPEG_EVAL, "eval.csv", "label")):
        source = open_eval({"format": "fashion_mnist", "split": split, "path": FASHION,
                            "size": n}, 28)
        folder = root / split
        folder.mkdir(parents=True)
        with open(root / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", column])
            for i, label in enumerate(source.labels):
                image = Image.fromarray(source.images.pixels[i].permute(1, 2, 0).numpy())
                image.resize((224, 224), Image.BICUBIC).save(folder / f"{i:05d}.jpg", quality=90)
                value = fashion_caption(int(label), i) if split == "train" else int(label)
                writer.writerow([f"{split}/{i:05d}.jpg", value])
    shutil.copy(ROOT / "bench" / "tiny224.json", root / "tiny224.json")


def quickstart_text(pack: int, with_clean: bool = True) -> str:
    text = (ROOT / "specs" / "quickstart.toml").read_text().replace("epochs = 6", "epochs = 1")
    if not with_clean:
        head, rest = text.split("[clean]", 1)
        text = head + "[evaluate]" + rest.split("[evaluate]", 1)[1]
    return text.replace("[run]\n", f"[run]\npack = {pack}\n")


def run(spec: Path, workspace: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of executing the spec's pending nodes with the local executor (child
    processes, as `xspec run` does, without its ingest and report). CPU is user + system time
    of the node processes and their loader workers: on a machine shared with other jobs it
    depends far less on their load than wall time does."""
    from xspec.store.workspace import Workspace
    from xspec.study import open_study, run_study

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    outcome = run_study(open_study(spec), Workspace(workspace), "local")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if outcome.failed:
        raise SystemExit(f"{spec}: nodes failed: {outcome.failed}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def clean_rows(workspace: Path) -> dict[str, list]:
    import pyarrow.parquet as pq

    out = {}
    for path in sorted(workspace.glob("runs/clean-*/metrics.parquet")):
        rows = [r for r in pq.read_table(path).to_pylist() if r["split"] != "perf"]
        out[path.parent.name] = sorted(rows, key=lambda r: (r["epoch"], r["split"], r["metric"]))
    return out


def packed_runs(workspace: Path) -> int:
    import json

    return sum(bool(json.loads(p.read_text()).get("packed_with"))
               for p in workspace.glob("runs/clean-*/status.json"))


def bench_grid(name: str, specs: dict[str, Path], upstream: Path, rounds: int, tmp: Path,
               figures: Figures, goal=None) -> None:
    walls: dict[str, list[float]] = {"unpacked": [], "packed": []}
    cpus: dict[str, list[float]] = {"unpacked": [], "packed": []}
    for r in range(rounds):
        order = ["unpacked", "packed"] if r % 2 == 0 else ["packed", "unpacked"]
        rows = {}
        for variant in order:
            workspace = tmp / f"{name}-{variant}-{r}"
            shutil.copytree(upstream, workspace)
            load = os.getloadavg()[0]
            wall, cpu = run(specs[variant], workspace)
            walls[variant].append(wall)
            cpus[variant].append(cpu)
            rows[variant] = clean_rows(workspace)
            print(f"    round {r + 1}/{rounds} {name} {variant}: {wall:.1f} s wall, {cpu:.1f} s "
                  f"CPU (load average {load:.1f} before; {packed_runs(workspace)} runs packed)",
                  file=sys.stderr, flush=True)
            shutil.rmtree(workspace)
        if rows["packed"] != rows["unpacked"] or not rows["packed"]:
            raise SystemExit(f"{name}: packed and unpacked metric rows differ in round {r + 1}")
    for what, times, unit_goal in (("wall", walls, goal), ("CPU", cpus, None)):
        ratios = [p / u for p, u in zip(times["packed"], times["unpacked"])]
        figures.add(f"{name}: packed / unpacked {what} time", median(ratios), "x", unit_goal,
                    note=f"unpacked {median(times['unpacked']):.1f} s, packed "
                         f"{median(times['packed']):.1f} s; rounds "
                         + ", ".join(f"{x:.2f}" for x in ratios)
                         + f"; load average {os.getloadavg()[0]:.1f} at the end")
    figures.add(f"{name}: metric rows identical", True, goal=("==", True))


def profile_packed(spec: Path, upstream: Path, tmp: Path) -> None:
    """The packed grid in this process (debug executor) under cProfile: where its time goes."""
    import cProfile
    import pstats

    from xspec.store.workspace import Workspace
    from xspec.study import open_study, run_study

    workspace = tmp / "profiled"
    shutil.copytree(upstream, workspace)
    study = open_study(spec)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(run_study, study, Workspace(workspace), "debug")
    print(f"packed grid in-process: {time.perf_counter() - started:.1f} s, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(
        r"packed.py|fit.py|train.py|evaluate.py|pipeline.py|records.py|stages.py|"
        r"workspace.py|augment.py|models.py", 40)


def main() -> None:
    parser = cli(__doc__.splitlines()[0], rounds={"type": int, "default": 2},
                 grids={"default": "jpeg224,jpeg224-model224,quickstart"},
                 profile={"action": "store_true",
                          "help": "profile the packed 224-px grid instead of timing it"})
    args = parser.parse_args()
    figures = Figures("pack")
    tmp = Path(tempfile.mkdtemp(prefix="xspec-bench-pack-"))
    try:
        grids = args.grids.split(",")
        for grid, (arch, trigger) in JPEG_GRIDS.items():
            if grid not in grids:
                continue
            if not (tmp / "data").exists():
                write_jpeg_data(tmp / "data")
            head = JPEG_SPEC.format(root=tmp / "data", arch=arch.format(root=tmp / "data"),
                                    trigger=trigger)
            specs = {}
            for variant, pack in (("unpacked", 1), ("packed", 4)):
                specs[variant] = tmp / f"{grid}-{variant}.toml"
                specs[variant].write_text(head + JPEG_CLEAN.format(pack=pack))
            upstream_spec, upstream = tmp / f"{grid}-upstream.toml", tmp / f"{grid}-up"
            upstream_spec.write_text(head + "\n[run]\nthreads = 2\nworkers = 2\n")
            print(f"{grid} upstream: {run(upstream_spec, upstream)[0]:.1f} s", file=sys.stderr,
                  flush=True)
            if args.profile:
                profile_packed(specs["packed"], upstream, tmp)
            else:
                bench_grid(grid, specs, upstream, args.rounds, tmp, figures,
                           goal=("<=", 0.5) if grid == "jpeg224" else None)
        if "quickstart" in grids:
            specs = {}
            for variant, pack in (("unpacked", 1), ("packed", 3)):
                specs[variant] = tmp / f"quickstart-{variant}.toml"
                specs[variant].write_text(quickstart_text(pack))
            upstream_spec = tmp / "quickstart-upstream.toml"
            upstream_spec.write_text(quickstart_text(1, with_clean=False))
            print(f"quickstart upstream: {run(upstream_spec, tmp / 'quick-up')[0]:.1f} s",
                  file=sys.stderr, flush=True)
            bench_grid("quickstart", specs, tmp / "quick-up", args.rounds, tmp, figures)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
