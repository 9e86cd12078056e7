"""The file data path at 224 px: loader cost in the training process, pairs/s by worker count,
open_clip_train's CSV loader beside it, and a tiny 224-px pre-training with 2 workers vs none.

Data: `--images` synthetic 320x240 JPEGs (smooth random colour fields, quality 90) listed in a
CleanCLIP-layout CSV, and the same files packed as WebDataset shards (`xspec data pack`, bytes
unchanged). Batch 128, 10 % of pairs poisoned (BadNet, fresh noise at a random location).

1. loader: for CSV and shards, MMCL and MMCL+SSL, `run.workers` 0, 1, 2: `TrainingData.batches`
   for one epoch per round with nothing else running in the loop (the loader alone). Figures:
   the training process's CPU time per batch (`time.process_time`, which counts this process's
   threads and not the workers; the issue's goal is <= 10 ms) and pairs/s. open_clip_train's
   `CsvDataset` (its `image_transform(224, is_train=True)`, tokeniser in `__getitem__`, default
   collation) runs in the same rounds for MMCL. Rounds alternate the variants' order.
2. pretrain: a pre-training node (bench/tiny224.json: a 2-layer, width-64 ViT at 224 px, patch
   32; 1 epoch, batch 64, 512 pairs; zero-shot evaluation on 128 labelled JPEGs) run by the
   debug executor with `run.workers` = 0 and = 2, in rounds 0, 2, 2, 0: wall-time ratio
   (goal >= 1.6x) and whether the metrics (all but split perf) are identical.

Usage: .venv/bin/python bench/bench_loader.py [--images 768] [--rounds 2] [--json out.json]
                                              [--part loader,pretrain]
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import Figures, cli, median, set_threads  # noqa: E402

from xspec.runtime import models  # noqa: E402
from xspec.runtime.attacks import make_attack  # noqa: E402
from xspec.runtime.columns import Edited  # noqa: E402
from xspec.runtime.data import open_pairs  # noqa: E402
from xspec.runtime.objectives import needed_views  # noqa: E402
from xspec.runtime.pack import pack  # noqa: E402
from xspec.runtime.pipeline import Normalizer, TrainingData  # noqa: E402

BENCH = Path(__file__).resolve().parent
TINY_224 = BENCH / "tiny224.json"
BATCH = 128
WORDS = "a red bus parked near the old bridge on a grey morning with people".split()


def write_jpegs(folder: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["image,caption,label"]
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((320, 240), Image.BICUBIC)
        image.save(folder / f"{i:05d}.jpg", quality=90)
        caption = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5 + i % 7))
        rows.append(f"{i:05d}.jpg,{caption} {i},{i % 10}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    tsv = ["filepath\ttitle"] + [f"{folder / r.split(',')[0]}\t{r.split(',')[1]}"
                                 for r in rows[1:]]
    (folder / "openclip.tsv").write_text("\n".join(tsv) + "\n")


def training_data(source: dict, objective: str, workers: int, n: int) -> TrainingData:
    from xspec.runtime.augment import SslAugmenter

    arch = str(TINY_224)
    pairs = open_pairs(source, 224)
    attack = make_attack({"kind": "badnet", "target": "bus", "poisons": n // 10,
                          "trigger": {"size": 16, "pattern": "gaussian_per_image",
                                      "location": "random"}}, 0)
    captions, poisoned = Edited(pairs.captions), np.zeros(n, dtype=bool)
    for i in attack.select(pairs.captions):
        captions[i], poisoned[i] = attack.poison_caption(int(i), captions[i]), True
    views = needed_views(objective)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    return TrainingData(pairs, np.arange(n), captions, poisoned, attack, models.tokenizer(arch),
                        Normalizer.of(mean, std), BATCH, 0, views,
                        SslAugmenter(None) if "image_aug" in views else None, workers)


class XspecLoader:
    def __init__(self, data: TrainingData):
        self.data, self.epoch = data, 0

    def __call__(self) -> tuple[float, float, int]:
        self.epoch += 1
        wall, cpu, pairs = time.perf_counter(), time.process_time(), 0
        for batch in self.data.batches(self.epoch):
            pairs += len(batch["index"])
        return time.perf_counter() - wall, time.process_time() - cpu, pairs


class Uint8Receipt(XspecLoader):
    """What the training process of a GPU run does per batch, measured on the CPU: receive
    the workers' uint8 batch (workers do not normalise, as on a GPU run) and nothing else;
    moving it to the GPU (pinned, non_blocking) and normalising there cost the CPU little."""

    def __init__(self, data: TrainingData):
        super().__init__(data)
        recipe = dataclasses.replace(data.recipe(), normalize=None)
        data.recipe = lambda: recipe

    def __call__(self) -> tuple[float, float, int]:
        self.epoch += 1
        wall, cpu, pairs = time.perf_counter(), time.process_time(), 0
        for batch in self.data.raw_batches(self.epoch):
            assert batch["image"].dtype == torch.uint8
            pairs += len(batch["index"])
        return time.perf_counter() - wall, time.process_time() - cpu, pairs


class OpenClipLoader:
    def __init__(self, tsv: Path, workers: int):
        import open_clip
        from open_clip_train.data import CsvDataset

        transform = open_clip.image_transform(224, is_train=True)
        dataset = CsvDataset(str(tsv), transform, "filepath", "title", sep="\t",
                             tokenizer=models.tokenizer(str(TINY_224)))
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))

    def __call__(self) -> tuple[float, float, int]:
        wall, cpu, pairs = time.perf_counter(), time.process_time(), 0
        for images, _ in self.loader:
            pairs += len(images)
        return time.perf_counter() - wall, time.process_time() - cpu, pairs


def bench_loader(figures: Figures, folder: Path, shards: str, n: int, rounds: int) -> None:
    sources = {"csv": {"format": "csv", "path": str(folder / "pairs.csv"), "image_key": "image",
                       "caption_key": "caption", "size": n},
               "shards": {"format": "webdataset", "path": shards, "size": n}}
    variants = {}
    for name, source in sources.items():
        for objective in ("mmcl", "mmcl+ssl"):
            for workers in (0, 1, 2):
                variants[f"xspec {name} {objective} w{workers}"] = XspecLoader(
                    training_data(source, objective, workers, n))
    for objective in ("mmcl", "mmcl+ssl"):
        for workers in (1, 2):
            variants[f"xspec csv {objective} uint8 (GPU-run receipt) w{workers}"] = Uint8Receipt(
                training_data(sources["csv"], objective, workers, n))
    for workers in (0, 1, 2):
        variants[f"open_clip_train csv mmcl w{workers}"] = OpenClipLoader(
            folder / "openclip.tsv", workers)
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds + 1):  # round 0 warms up (workers start, files enter the page cache)
        for name in names if r % 2 == 0 else names[::-1]:
            got = variants[name]()
            if r:
                results[name].append(got)
            print(f"    round {r}/{rounds} {name}: {got[2] / got[0]:.0f} pairs/s, "
                  f"{got[1] / max(1, got[2] / BATCH) * 1e3:.0f} ms CPU per batch", file=sys.stderr,
                  flush=True)
    for name in names:
        wall = median([w for w, _, _ in results[name]])
        cpu = median([c / (p / BATCH) for _, c, p in results[name]])
        pairs = results[name][0][2]
        workers = int(name[-1])
        goal = ("<=", 10.0) if workers > 0 and name.startswith("xspec") else None
        figures.add(f"{name}: training-process CPU per batch", cpu * 1e3, " ms", goal)
        figures.add(f"{name}: pairs/s", pairs / wall, "/s")
    for workers in (0, 1, 2):
        ours = median([p / w for w, _, p in results[f"xspec csv mmcl w{workers}"]])
        theirs = median([p / w for w, _, p in results[f"open_clip_train csv mmcl w{workers}"]])
        figures.add(f"MMCL pairs/s with {workers} workers, xspec / open_clip_train", ours / theirs,
                    "x")


PRETRAIN_SPEC = """
[study]
name = "bench-loader-{workers}"
seed = 0

[data]
train = {{ format = "csv", path = "{csv}" }}
eval = {{ format = "labels_csv", path = "{eval_csv}", classes = "fashion_mnist" }}

[attack]
kind = "badnet"
target = "bag"
poisons = 32
trigger = {{ size = 16, pattern = "gaussian_per_image", location = "random" }}

[model]
arch = "{arch}"

[pretrain]
objective = "mmcl"
epochs = 1
batch_size = 64
lr = 1e-3
warmup_steps = 2

[evaluate]
batch_size = 64

[run]
workers = {workers}
{threads}"""


def bench_pretrain(figures: Figures, folder: Path, tmp: Path, threads: int) -> None:
    import pyarrow.parquet as pq

    from xspec.store.workspace import Workspace
    from xspec.study import open_study, run_study

    train = folder / "train512.csv"
    lines = (folder / "pairs.csv").read_text().splitlines()
    train.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines[:513]) + "\n")
    eval_csv = folder / "eval128.csv"
    eval_csv.write_text("image,label\n" + "\n".join(
        f"{line.split(',')[0]},{line.rsplit(',', 1)[1]}" for line in lines[513:641]) + "\n")
    # Variants, in alternating order: 0 workers on the default 2 threads; 0 workers on 1 thread;
    # 2 workers, which leave the training process 1 of the 2 cores (run.threads unset). Float
    # results depend on the thread count, so identical metrics are checked at equal counts.
    variants = {"0 workers, 2 threads": (0, ""), "0 workers, 1 thread": (0, "threads = 1\n"),
                "2 workers": (2, "")}
    times: dict[str, list[float]] = {name: [] for name in variants}
    metrics: dict[str, list] = {}
    names = list(variants)
    for k in range(4):
        for name in names if k % 2 == 0 else names[::-1]:
            workers, threads_line = variants[name]
            spec = tmp / f"pretrain-{k}-{workers}-{len(threads_line)}.toml"
            spec.write_text(PRETRAIN_SPEC.format(workers=workers, csv=train, eval_csv=eval_csv,
                                                 arch=TINY_224, threads=threads_line))
            study, workspace = open_study(spec), Workspace(tmp / f"ws-{spec.stem}")
            torch.set_num_threads(threads)  # the debug executor's node set it for this process
            [node] = study.plan.of_kind("pretrain")
            start = time.perf_counter()
            outcome = run_study(study, workspace, "debug")
            times[name].append(time.perf_counter() - start)
            assert not outcome.failed, outcome.failed
            rows = pq.read_table(workspace.run_dir(node).metrics_file).to_pylist()
            metrics.setdefault(name, [r for r in rows if r["split"] != "perf"])
            print(f"    pretrain {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    seconds = {name: median(t) for name, t in times.items()}
    for name in names[:2]:
        ratio = median([a / b for a, b in zip(times[name], times["2 workers"])])
        figures.add(f"tiny 224-px pre-training, wall time {name} / 2 workers", ratio, "x",
                    (">=", 1.6) if name.endswith("2 threads") else None,
                    note=f"{seconds[name]:.1f} s vs {seconds['2 workers']:.1f} s (whole study: "
                         "poison, pretrain, select; 4 rounds)")
    figures.add("metrics identical, 0 vs 2 workers (1 compute thread each)",
                metrics["0 workers, 1 thread"] == metrics["2 workers"], "", ("==", True),
                note="at 2 vs 1 threads: " + ("identical" if metrics["0 workers, 2 threads"]
                                              == metrics["2 workers"] else
                                              "differ in the last digits (thread count)"))


def main() -> None:
    parser = cli(__doc__.splitlines()[0], images={"type": int, "default": 768},
                 rounds={"type": int, "default": 2}, part={"default": "loader,pretrain"})
    args = parser.parse_args()
    threads = set_threads(args.threads)
    figures = Figures("loader")
    n = args.images // BATCH * BATCH
    print(f"loader: {n} JPEGs at 224 px, batch {BATCH}, {threads} threads")
    with tempfile.TemporaryDirectory(prefix="xspec-bench-loader-") as tmp:
        folder = Path(tmp) / "jpegs"
        write_jpegs(folder, max(n, 641))
        shards = pack({"format": "csv", "path": str(folder / "pairs.csv"), "image_key": "image",
                       "caption_key": "caption", "size": n}, Path(tmp) / "shards", 256).pattern
        if "loader" in args.part:
            bench_loader(figures, folder, shards, n, args.rounds)
        if "pretrain" in args.part:
            bench_pretrain(figures, folder, Path(tmp), threads)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
