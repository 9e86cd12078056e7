"""Per-core loader throughput: xspec's training loader beside open_clip_train's, on the same JPEGs.

Files: `--images` synthetic JPEGs sized as img2dataset writes them (bench/_jpegs.py: shorter side
256-512, aspect 1-2 either way, photo-like entropy), one CSV for xspec, one TSV for open_clip.
Variants, each a DataLoader with `--workers` worker processes over one epoch, batch 128:

- xspec MMCL and MMCL+SSL (10 % of pairs poisoned: BadNet, fresh noise at a random location;
  SSL adds the AutoAugment view of the same decoded image and an EDA caption), for each decode
  mode of the source (`decode = "exact"`, the paper specs' default; "crop_first"; "draft"),
  with the workers of a GPU run ("uint8": views leave as uint8 and are normalised on the GPU),
  and, for "crop_first", those of a CPU-only run ("float": the workers normalise, as
  open_clip's always do).
- open_clip_train's `CsvDataset` with `image_transform(224, is_train=True)` (RandomResizedCrop,
  ToTensor, Normalize per sample) and its tokenizer per sample, default collation: what its
  workers do for MMCL. It has no SSL; MMCL+SSL is compared with it as the work a worker core
  must keep up with.

Per core: the CPU seconds (user + system, /proc/PID/stat) the worker processes spent in the epoch,
so pairs per worker-CPU-second hardly depend on what else runs on the machine. Rounds alternate
the variants' order; ratios are per round (xspec / open_clip in the same round), printed as the
median with their min-max spread. Also per variant: the training process's CPU ms per batch
(`time.process_time`: receiving the batches), and the workers' unique memory (USS) after an epoch.

Usage: .venv/bin/python bench/bench_percore.py [--images 512] [--rounds 4] [--workers 2]
                                               [--modes exact,crop_first,draft] [--recipes uint8,float]
                                               [--json out.json]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import Figures, cli, median, set_threads  # noqa: E402
from _jpegs import write_jpegs  # noqa: E402
from bench_loader import BATCH, OpenClipLoader, training_data  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def uss_mb(pid: int) -> float:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean", "Private_Dirty")):
            total += int(line.split()[1])
    return total / 1024


class Variant:
    """One loader; `epoch()` -> (pairs, worker CPU s, training-process CPU s, wall s)."""

    def __init__(self, batches, workers_of):
        self.batches, self.workers_of, self.epochs = batches, workers_of, 0

    def epoch(self) -> tuple[int, float, float, float]:
        """Workers persist across epochs, so the CPU they spent between the start and the end
        of an epoch is all of its batches' (the first epoch, a warm-up, starts them)."""
        self.epochs += 1
        pids = self.workers_of() if self.epochs > 1 else []
        before = sum(cpu_seconds(p) for p in pids)
        wall, own, pairs = time.perf_counter(), time.process_time(), 0
        for batch in self.batches(self.epochs):
            pairs += len(batch[0] if isinstance(batch, (list, tuple)) else batch["index"])
        own, wall = time.process_time() - own, time.perf_counter() - wall
        workers_cpu = sum(cpu_seconds(p) for p in pids) - before if pids else float("nan")
        return pairs, workers_cpu, own, wall

    def uss(self) -> float:
        return max(uss_mb(p) for p in self.workers_of())


def xspec_variant(folder: Path, objective: str, mode: str, workers: int, n: int,
                  recipe: str) -> Variant:
    """`recipe` "uint8": the workers of a GPU run (uint8 views out, normalised on the device);
    "float": those of a CPU-only run (they normalise, as open_clip's workers always do)."""
    source = {"format": "csv", "path": str(folder / "pairs.csv"), "image_key": "image",
              "caption_key": "caption", "size": n, "decode": mode}
    data = training_data(source, objective, workers, n)
    if recipe == "uint8":
        built = dataclasses.replace(data.recipe(), normalize=None)
        data.recipe = lambda: built
    return Variant(data.raw_batches, lambda: [w.pid for w in data.loader._loader._iterator._workers])


def openclip_variant(folder: Path, workers: int) -> Variant:
    loader = OpenClipLoader(folder / "openclip.tsv", workers).loader
    state = {}

    def batches(epoch):
        state["it"] = iter(loader)
        return state["it"]

    return Variant(batches, lambda: [w.pid for w in state["it"]._workers])


def main() -> None:
    parser = cli(__doc__.splitlines()[0], images={"type": int, "default": 512},
                 rounds={"type": int, "default": 4}, workers={"type": int, "default": 2},
                 modes={"default": "exact,crop_first,draft"},
                 recipes={"default": "uint8,float"})
    args = parser.parse_args()
    set_threads(args.threads)
    figures = Figures("percore")
    n = max(2, args.images // BATCH) * BATCH
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="xspec-bench-percore-") as tmp:
        folder = Path(tmp) / "jpegs"
        write_jpegs(folder, n)
        print(f"percore: {n} img2dataset-sized JPEGs, batch {BATCH}, {args.workers} workers")
        variants = {"open_clip_train mmcl": openclip_variant(folder, args.workers)}
        for recipe in args.recipes.split(","):
            for objective in ("mmcl", "mmcl+ssl"):
                for mode in modes if recipe == "uint8" else ["crop_first"]:
                    variants[f"xspec {objective} {mode} {recipe}"] = xspec_variant(
                        folder, objective, mode, args.workers, n, recipe)
        results: dict[str, list] = {k: [] for k in variants}
        names = list(variants)
        for r in range(args.rounds + 1):  # round 0 warms up (workers start, page cache)
            for name in names if r % 2 == 0 else names[::-1]:
                got = variants[name].epoch()
                if r:
                    results[name].append(got)
                pairs, wcpu, own, wall = got
                print(f"    round {r}/{args.rounds} {name}: {pairs / wcpu:.0f} pairs per worker "
                      f"CPU-s, {own / (pairs / BATCH) * 1e3:.1f} ms per batch here, "
                      f"{pairs / wall:.0f} pairs/s wall", file=sys.stderr, flush=True)
        report(figures, variants, results, modes)
    figures.dump(args.json)


def report(figures: Figures, variants: dict, results: dict, modes: list[str]) -> None:
    base = "open_clip_train mmcl"
    for name, rows in results.items():
        per_core = median([p / c for p, c, _, _ in rows])
        figures.add(f"{name}: pairs per worker-core second", per_core, "/s",
                    note=f"training process {median([o / (p / BATCH) for p, _, o, _ in rows]) * 1e3:.1f}"
                         f" ms CPU per batch; worker USS {variants[name].uss():.0f} MB")
    for name in results:
        if name == base:
            continue
        ratios = [(p / c) / (bp / bc) for (p, c, _, _), (bp, bc, _, _)
                  in zip(results[name], results[base])]
        goal = None
        if name.endswith("crop_first uint8"):  # the GPU node's workers, default-grade pixels
            goal = (">=", 1.2) if name.split()[1] == "mmcl" else (">=", 1.0)
        figures.add(f"per-core pairs/s, {name} / open_clip_train mmcl", median(ratios), "x", goal,
                    note=f"rounds {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
