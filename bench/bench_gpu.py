"""GPU: ViT-B/32 training samples/s and MFU in bf16, xspec vs open_clip_train, and evaluation
throughput. One prepared script, a few minutes on one GPU.

On a GPU (`--device auto` finds one): ViT-B-32 at 224 px, batch 256, bf16 autocast (xspec's
`train()`; open_clip_train `--precision amp_bf16`, 8 loader workers), `--steps` steps each after
warm-up, per-step times (both loops synchronise every step: xspec reads its losses, open_clip
logs every step). MFU = 3 x forward FLOPs per sample (counted by torch's FlopCounterMode) x
samples/s / the GPU's dense bf16 peak. Evaluation: `evaluate()` over in-memory 224-px images,
each scored clean and triggered, against the image tower alone on the same images.

File path (`--files`, on by default): the same loops on 224-px JPEG files through the real
loaders: xspec's `TrainingData` (CSV, `run.workers` = --workers; uint8 to the GPU, normalised
there) for RN50 and ViT-B-32, MMCL and MMCL+SSL, beside open_clip_train's CSV loader
(`--dataset-type csv`, same files, same worker count) for MMCL: samples/s, MFU, and the share of
each step xspec's loop waited for data.

The files are img2dataset-sized (bench/_jpegs.py: shorter side 256-512, aspect 1-2), decoded
with the paper specs' default `decode = "exact"`.

Packed cleaning (`run.pack = K`, K = 1, 4, 8, RN50 on a GPU): one loader feeds K members, each
stepping with its own learning rate on every batch, one after the other and fused (`run.fuse`:
one vmapped pass, xspec.runtime.fused); time per grid point per batch (data wait + steps), and
packed K / unpacked (goal for K = 4: <= 0.5x) with its floor S / (W + S).

Without a GPU the CPU path runs the same code on the tiny models (xspec-vit-tiny in memory,
bench/tiny224.json on files; fp32, batch 128, a few steps) and says so; MFU is then left out
(no meaningful peak), achieved GFLOP/s shown. `--smoke` runs every section on the CPU with a
micro model in about two minutes (tests/bench/test_bench_gpu_smoke.py). On one H200 the whole
script should take 4-6 minutes (estimated, not yet run there: 2,048 JPEGs written ~1 min, three
open_clip_train start-ups ~30 s each, the rest tens of seconds); run it with a 480 s timeout.

Usage: .venv/bin/python bench/bench_gpu.py [--device auto|cuda|cpu] [--steps 40] [--json out.json]
                                           [--no-files] [--workers 12] [--smoke]
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    FASHION,
    Baton,
    Figures,
    cli,
    interleave,
    median,
    paired_ratio,
    pooled,
    set_threads,
)
from bench_train import OpenClipRunner, TimedData, quickstart_attack, quiet_logging, xspec_loop  # noqa: E402

from xspec.runtime import models  # noqa: E402
from xspec.runtime.attacks import make_attack  # noqa: E402
from xspec.runtime.data import open_eval, open_pairs  # noqa: E402
from xspec.runtime.evaluate import clip80_templates, eval_mode, evaluate, zero_shot_classifier  # noqa: E402
from xspec.runtime.pipeline import Normalizer, TrainingData, eval_batches  # noqa: E402

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets.
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
         "A10": 125e12, "RTX 4090": 165e12}
SKIP = 5
BENCH = Path(__file__).resolve().parent


def profile(device: torch.device, smoke: bool = False) -> dict:
    if smoke:  # the test's CPU run: every section, minutes not hours
        return {"arch": "xspec-vit-micro", "batch": 16, "precision": "fp32", "workers": 0,
                "images": 256, "eval_images": 64, "eval_batch": 32, "files": 128, "pack_steps": 4}
    if device.type == "cuda":
        return {"arch": "ViT-B-32", "batch": 256, "precision": "amp_bf16", "workers": 8,
                "images": 4096, "eval_images": 4096, "eval_batch": 512}
    return {"arch": "xspec-vit-tiny", "batch": 128, "precision": "fp32", "workers": 0,
            "images": 2048, "eval_images": 1000, "eval_batch": 256}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAKS.items() if key in name), None)


def train_flops_per_sample(arch: str, device: torch.device) -> float:
    """3 x the forward FLOPs of one (image, caption) pair: forward + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    model = models.create(arch, "scratch", device)
    _, _, size = models.image_stats(model)
    image = torch.zeros(1, 3, size, size, device=device)
    text = models.tokenizer(arch)(["a photo of a bag"]).to(device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image, text)
    return 3.0 * counter.get_total_flops()


def pairs_data(arch: str, p: dict, steps: int) -> TrainingData:
    """Fashion-MNIST pairs at the model's size, in memory; indices repeat to fill the epoch."""
    model = models.create(arch, "scratch", torch.device("cpu"))
    mean, std, size = models.image_stats(model)
    pairs = open_pairs({"format": "fashion_mnist", "split": "train", "path": FASHION,
                        "size": p["images"]}, size)
    attack = make_attack(quickstart_attack(p["images"]), 0)
    captions, poisoned = list(pairs.captions), np.zeros(p["images"], dtype=bool)
    for i in attack.select(captions):
        captions[i], poisoned[i] = attack.poison_caption(int(i), captions[i]), True
    indices = np.arange(steps * p["batch"]) % p["images"]
    return TrainingData(pairs, indices, captions, poisoned, attack, models.tokenizer(arch),
                        Normalizer.of(mean, std), p["batch"], 0, {"image", "text"}, None, 0)


def bench_training(figures: Figures, device: torch.device, p: dict, steps: int,
                   logs: Path) -> None:
    arch, batch = p["arch"], p["batch"]
    data = pairs_data(arch, p, steps + SKIP + 1)
    baton = Baton(["xspec"])
    timed = TimedData(data, baton, "xspec")
    baton.run({"xspec": xspec_loop("mmcl", timed, arch, device)})
    xs = median(baton.times["xspec"][SKIP:-1])
    oc = OpenClipRunner(logs, batch, arch, (steps + SKIP + 1) * batch, device.type,
                        p["precision"], p["workers"])
    baton = Baton([oc.name])
    with quiet_logging(torch.get_num_threads()):
        baton.run({oc.name: oc.loop(baton)})
    ref = median(baton.times[oc.name][SKIP:-1])
    logged = median(oc.logged[SKIP:])
    flops = train_flops_per_sample(arch, device)
    peak = peak_flops(device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    figures.add(f"{arch} {precision} training, xspec, samples/s", batch / xs, "/s",
                note=f"data {median(timed.data_times[SKIP:]) * 1e3:.0f} ms of {xs * 1e3:.0f} ms"
                     " per step")
    figures.add(f"{arch} {precision} training, open_clip_train, samples/s (its log)",
                batch / logged, "/s", note=f"timed here: {batch / ref:.0f}/s")
    figures.add("training samples/s, xspec / open_clip_train", logged / xs, "x", (">=", 1.0))
    for who, seconds in (("xspec", xs), ("open_clip_train", logged)):
        achieved = flops * batch / seconds
        if peak:
            figures.add(f"MFU, {who}", achieved / peak, "",
                        note=f"{achieved / 1e12:.0f} of {peak / 1e12:.0f} TFLOP/s")
        else:
            figures.add(f"achieved training GFLOP/s, {who}", achieved / 1e9, "",
                        note="no MFU: no known peak for this device")


class OpenClipCsvRunner(OpenClipRunner):
    """open_clip_train reading a tab-separated CSV of image paths and captions."""

    def __init__(self, tsv: Path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tsv = tsv

    def args(self, run: str) -> list[str]:
        out = super().args(run)
        i = out.index("synthetic")
        out[i - 1:i + 1] = ["--dataset-type", "csv", "--train-data", str(self.tsv),
                            "--csv-img-key", "filepath", "--csv-caption-key", "title",
                            "--csv-separator", "\t"]
        return out


def file_data(arch: str, objective: str, folder: Path, n: int, p: dict, steps: int,
              workers: int, device: torch.device) -> TrainingData:
    """TrainingData over the JPEG CSV, indices repeated to fill `steps` batches."""
    from xspec.runtime.augment import SslAugmenter
    from xspec.runtime.objectives import needed_views

    model = models.create(arch, "scratch", torch.device("cpu"))
    mean, std, size = models.image_stats(model)
    pairs = open_pairs({"format": "csv", "path": str(folder / "pairs.csv"), "image_key": "image",
                        "caption_key": "caption", "size": n}, size)
    attack = make_attack(quickstart_attack(n), 0)
    poisoned = np.zeros(n, dtype=bool)
    poisoned[attack.select(pairs.captions)] = True
    views = needed_views(objective)
    return TrainingData(pairs, np.arange(steps * p["batch"]) % n, pairs.captions, poisoned,
                        attack, models.tokenizer(arch), Normalizer.of(mean, std), p["batch"], 0,
                        views, SslAugmenter(None) if "image_aug" in views else None, workers,
                        device)


def bench_files(figures: Figures, device: torch.device, p: dict, steps: int, logs: Path,
                workers: int) -> None:
    import os

    from _jpegs import write_jpegs

    archs = (("RN50", "ViT-B-32") if device.type == "cuda" else
             (p["arch"],) if p.get("files") else (str(BENCH / "tiny224.json"),))
    if device.type == "cpu":  # as a node would run (xspec.runtime.runner.configure_process)
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - workers))
    n = p.get("files") or (2048 if device.type == "cuda" else 512)
    folder = logs / "jpegs"
    write_jpegs(folder, n)
    rows = (folder / "openclip.tsv").read_text().splitlines()
    needed = (steps + SKIP + 1) * p["batch"]  # open_clip_train's CSV epoch is the file's length
    body = [rows[1 + i % (len(rows) - 1)] for i in range(needed)]
    (folder / "openclip.tsv").write_text("\n".join([rows[0], *body]) + "\n")
    peak = peak_flops(device)
    for arch in archs:
        label = Path(arch).stem
        flops = train_flops_per_sample(arch, device)
        for objective in ("mmcl", "mmcl+ssl"):
            data = file_data(arch, objective, folder, n, p, steps + SKIP + 1, workers, device)
            baton = Baton(["xspec"])
            timed = TimedData(data, baton, "xspec")
            baton.run({"xspec": xspec_loop(objective, timed, arch, device)})
            step = median(baton.times["xspec"][SKIP:-1])
            wait = median(timed.data_times[SKIP:]) / step
            per_pair = flops * (2 if objective == "mmcl+ssl" else 1)
            mfu = f", MFU {per_pair * p['batch'] / step / peak:.1%}" if peak else ""
            figures.add(f"files {label} {objective}, xspec, pairs/s", p["batch"] / step, "/s",
                        note=f"data wait {wait:.0%} of a step, {workers} workers{mfu}")
            if objective != "mmcl":
                continue
            oc = OpenClipCsvRunner(folder / "openclip.tsv", logs, p["batch"], models.resolve(arch),
                                   (steps + SKIP + 1) * p["batch"], device.type, p["precision"],
                                   workers)
            baton = Baton([oc.name])
            with quiet_logging(torch.get_num_threads()):
                baton.run({oc.name: oc.loop(baton)})
            logged = median(oc.logged[SKIP:])
            mfu = f", MFU {flops * p['batch'] / logged / peak:.1%}" if peak else ""
            figures.add(f"files {label} mmcl, open_clip_train csv, pairs/s", p["batch"] / logged,
                        "/s", note=f"{workers} workers{mfu}")
            figures.add(f"files {label} mmcl pairs/s, xspec / open_clip_train", logged / step,
                        "x", (">=", 1.0))
    bench_packed(figures, device, p, folder, n, workers, archs[0])


class _Member:
    """What the epoch loop's step reads and writes of a member (xspec.runtime.loop.Trainee)."""

    hooks, terms, progress, error = None, (), None, None

    def __init__(self, cfg, model, optimizer, state):
        self.cfg, self.model, self.optimizer, self.state = cfg, model, optimizer, state

    def add(self, losses) -> None:
        pass

    def fail(self, exc: Exception) -> None:
        raise exc


def bench_packed(figures: Figures, device: torch.device, p: dict, folder: Path, n: int,
                 workers: int, arch: str, ks: tuple[int, ...] = (1, 4, 8)) -> None:
    """Cleaning K grid points packed in one job, as `run.pack = K` runs them: every batch is
    decoded, poisoned and moved once, then each member takes its own optimiser step on it (its
    own learning rate), one after the other or (`run.fuse`, K > 1) as one vmapped pass.
    Unpacked, each grid point is a job of its own that loads its data too: time per grid point,
    packed K / K=1 (goal 1/K where data dominates). The floor: with W the data wait per batch
    and S one member's step (K = 1), packing K costs (W + K S) / K(W + S) >= S / (W + S)."""
    from xspec.runtime.distributed import Dist
    from xspec.runtime.fused import FusedStep
    from xspec.runtime.optim import adamw
    from xspec.runtime.train import TrainState
    from xspec.spec.tables.training import Training

    steps = p.get("pack_steps", 12)
    per_point, parts = {}, {}
    for k, fuse in [(k, False) for k in ks] + [(k, True) for k in ks if k > 1]:
        members = []
        for i in range(k):
            torch.manual_seed(i)
            model = models.create(arch, "scratch", device)
            cfg = Training(objective="mmcl", epochs=1, lr=1e-5 * (i + 1), warmup_steps=2)
            members.append(_Member(cfg, model, adamw(model, cfg.lr, 0.1), TrainState()))
        step_all = FusedStep() if fuse else _sequential
        data = file_data(arch, "mmcl", folder, n, p, steps + 2, workers, device)
        waits, work = [], []
        asked = time.perf_counter()
        try:  # one failing variant (say a model vmap cannot batch) leaves the others' figures
            for batch in data.batches(1):
                got = time.perf_counter()
                step_all(members, batch, steps + 2, device, Dist())
                _sync(device)
                waits.append(got - asked)
                work.append(time.perf_counter() - got)
                asked = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - reported as the figure
            figures.add(f"packed cleaning {Path(arch).stem}, K = {k}{' fused' if fuse else ''}",
                        f"failed: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        wait, step = median(waits[2:]), median(work[2:])  # the first batches start the workers
        key = (k, fuse)
        per_point[key], parts[key] = (wait + step) / k, (wait, step)
        label = f"K = {k}" + (" fused" if fuse else "")
        figures.add(f"packed cleaning {Path(arch).stem}, {label}: time per grid point per batch",
                    per_point[key] * 1e3, " ms",
                    note=f"data wait {wait * 1e3:.0f} ms + steps {step * 1e3:.0f} ms a batch; "
                         f"{k * p['batch'] / (wait + step):.0f} member-pairs/s; {workers} workers")
        del members, data
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if (1, False) not in parts:
        return
    wait, step = parts[(1, False)]
    for key in sorted(per_point):
        if key == (1, False):
            continue
        k, fuse = key
        figures.add(f"packed K = {k}{' fused' if fuse else ''} / unpacked, time per grid point",
                    per_point[key] / per_point[(1, False)], "x",
                    ("<=", 0.5) if k == 4 else None,
                    note=f"floor with sequential steps S/(W+S) = {step / (wait + step):.2f}")


def _sequential(members: list, batch: dict, total_steps: int, device: torch.device, dist
                ) -> list:
    from xspec.runtime.train import train_step

    for m in members:
        train_step(m.cfg, m.model, m.model, m.optimizer, batch, m.state, total_steps, device)
    return members


def bench_evaluation(figures: Figures, device: torch.device, p: dict) -> None:
    arch = p["arch"]
    torch.manual_seed(0)
    model = models.create(arch, "scratch", device)
    mean, std, size = models.image_stats(model)
    normalize = Normalizer.of(mean, std)
    data = open_eval({"format": "fashion_mnist", "split": "test", "path": FASHION,
                      "size": p["eval_images"]}, size)
    attack = make_attack({**quickstart_attack(100), "poisons": 1}, 0)  # evaluation ignores it
    target = data.classes.index("bag")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    with autocast:
        classifier = zero_shot_classifier(model, models.tokenizer(arch), list(data.classes),
                                          clip80_templates(), device)

    def full() -> list[float]:
        start = time.perf_counter()
        with autocast:
            evaluate(model, classifier, eval_batches(data, attack, normalize, p["eval_batch"],
                                                     True), target)
        _sync(device)
        return [time.perf_counter() - start]

    def tower() -> list[float]:
        images = torch.randn(p["eval_batch"] * 2, 3, size, size, device=device)
        start = time.perf_counter()
        with autocast, eval_mode(model):
            for _ in range(0, len(data.labels), p["eval_batch"]):
                model.encode_image(images, normalize=True)
        _sync(device)
        return [time.perf_counter() - start]

    full(), tower()  # warm-up
    times = interleave({"evaluate": full, "tower": tower}, 5, log=False)
    n = len(data.labels)
    figures.add("evaluation (clean + triggered copy), images/s", n / pooled(times["evaluate"]),
                "/s", note=f"{arch}, batch {p['eval_batch']}")
    figures.add("image tower alone on the same images, images/s", n / pooled(times["tower"]),
                "/s", note=f"evaluation reaches "
                           f"{paired_ratio(times['tower'], times['evaluate']):.0%} of it")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = cli(__doc__.splitlines()[0],
                 device={"default": "auto", "help": "auto, cuda or cpu"},
                 steps={"type": int, "default": 0,
                        "help": "timed steps per loop (default: 40 on GPU, 8 on CPU)"},
                 workers={"type": int, "default": 0,
                          "help": "loader workers on the file path (default: 12 GPU, 2 CPU)"},
                 no_files={"action": "store_true", "help": "skip the file path"},
                 smoke={"action": "store_true",
                        "help": "CPU, micro model, 2 steps: every section runs (the test's)"})
    args = parser.parse_args()
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                      and not args.smoke else "cpu")
    device = torch.device(name)
    threads = set_threads(args.threads) if device.type == "cpu" else torch.get_num_threads()
    steps = args.steps or (2 if args.smoke else 40 if device.type == "cuda" else 8)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    logging.getLogger().setLevel(logging.ERROR)
    models.register_configs()
    p = profile(device, args.smoke)
    figures = Figures("gpu")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"no GPU: CPU path, tiny model, {threads} threads")
    print(f"gpu bench on {where}: {p['arch']}, batch {p['batch']}, {steps} steps per loop")
    figures.add("device", where)
    logs = Path(tempfile.mkdtemp(prefix="xspec-bench-gpu-"))
    try:
        bench_training(figures, device, p, steps, logs)
        bench_evaluation(figures, device, p)
        if not args.no_files:
            workers = args.workers or (12 if device.type == "cuda" else 1 if args.smoke else 2)
            bench_files(figures, device, p, steps, logs, workers)
            torch.set_num_threads(threads)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
