"""Training throughput: xspec's training loop vs open_clip's own (`open_clip_train`), same run.

1. xspec's `train()` (MMCL, Fashion-MNIST pairs in memory with the quickstart's BadNet poisoning)
   against `open_clip_train.main.main([...])` in-process on its synthetic dataset, with the same
   tiny config (`xspec-vit-tiny`), batch size, precision (fp32), thread count and AdamW settings.
   The two loops run in two threads in lockstep, one step each in turn (`_common.Baton`), so that
   step k of each meets the same machine load; the ratio is the median over steps of the paired
   ratios, then over rounds. Step times include data loading on both sides. open_clip's own
   samples/s are parsed from its log (less the time its loop waited for xspec's step).
2. MMCL+SSL against its floor: an MMCL+SSL step at batch B encodes 2B images and 2B captions, so
   it is compared with an MMCL step at batch 2B (the same forward/backward work, without the
   augmentation). The ratio is the SSL overhead (augmentation and the extra loss terms).

Usage: .venv/bin/python bench/bench_train.py [--rounds 3] [--threads 2]
       [--json out.json]
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import FASHION, Baton, Figures, cli, median, set_threads  # noqa: E402

from xspec.runtime import models  # noqa: E402
from xspec.runtime.attacks import make_attack  # noqa: E402
from xspec.runtime.data import open_pairs  # noqa: E402
from xspec.runtime.objectives import needed_views  # noqa: E402
from xspec.runtime.optim import adamw  # noqa: E402
from xspec.runtime.pipeline import Normalizer, TrainingData  # noqa: E402
from xspec.runtime.loop import train  # noqa: E402
from xspec.runtime.train import TrainState  # noqa: E402
from xspec.spec.tables.training import Training  # noqa: E402

ARCH = "xspec-vit-tiny"
SAMPLES = 2560
BATCH = 128
LR, WD, WARMUP = 5e-4, 0.2, 10
SKIP = 3  # warm-up steps left out of every median
STEP_LINE = re.compile(r"Batch \(t\): [\d.]+, ([\d.eE+-]+)/s,")


def quickstart_attack(samples: int) -> dict:
    return {"kind": "badnet", "target": "bag", "poisons": samples // 100,
            "trigger": {"size": 8, "pattern": "gaussian_fixed", "location": "four_corners"}}


def training_data(objective: str, batch_size: int, augmenter=None,
                  samples: int = SAMPLES) -> TrainingData:
    model = models.create(ARCH, "scratch", torch.device("cpu"))
    mean, std, size = models.image_stats(model)
    pairs = open_pairs({"format": "fashion_mnist", "split": "train", "path": FASHION,
                        "size": samples}, size)
    attack = make_attack(quickstart_attack(samples), 0)
    captions, poisoned = list(pairs.captions), np.zeros(samples, dtype=bool)
    for i in attack.select(captions):
        captions[i], poisoned[i] = attack.poison_caption(int(i), captions[i]), True
    return TrainingData(pairs, np.arange(samples), captions, poisoned, attack,
                        models.tokenizer(ARCH), Normalizer.of(mean, std), batch_size, 0,
                        needed_views(objective), augmenter, 0)


class TimedData:
    """TrainingData as train() sees it, taking the baton before each step; records data time."""

    def __init__(self, data: TrainingData, baton: Baton, name: str):
        self.data, self.baton, self.name, self.data_times = data, baton, name, []

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch

    def batches(self, *args, **kwargs):
        iterator = self.data.batches(*args, **kwargs)
        while True:
            self.baton.step(self.name)
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.data_times.append(time.perf_counter() - start)
            yield batch


CPU = torch.device("cpu")


def xspec_loop(objective: str, data: TimedData, arch: str = ARCH, device: torch.device = CPU):
    """One epoch of xspec's train() on a fresh model, as a thread body."""
    torch.manual_seed(0)
    model = models.create(arch, "scratch", device)
    optimizer = adamw(model, LR, WD)
    cfg = Training(objective=objective, epochs=1, lr=LR, warmup_steps=WARMUP)
    return lambda: train(cfg, model, data, optimizer, TrainState(), lambda state, losses: None,
                         device)


class TimedLoader:
    """open_clip_train's dataloader, taking the baton before each batch; records data time."""

    def __init__(self, loader, runner: OpenClipRunner):
        self.loader, self.runner = loader, runner

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            self.runner.baton.step(self.runner.name)
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.runner.data_times.append(time.perf_counter() - start)
            yield batch


class OpenClipRunner:
    """Calls open_clip_train.main.main in this process; one call = one epoch of its loop."""

    name = "open_clip_train"

    def __init__(self, logs: Path, batch_size: int = BATCH, arch: str = ARCH,
                 samples: int = SAMPLES, device: str = "cpu", precision: str = "fp32",
                 workers: int = 0):
        import open_clip_train.main as oc_main

        self.main, self.logs, self.batch = oc_main, logs, batch_size
        self.settings = {"--model": arch, "--train-num-samples": str(samples),
                         "--device": device, "--precision": precision, "--workers": str(workers)}
        self.runs, self.data_times, self.baton = 0, [], None
        # Wrap the unpatched get_data: a second runner in this process must not time its
        # batches through the first runner's baton (that deadlocks).
        original = getattr(oc_main, "_unpatched_get_data", oc_main.get_data)
        oc_main._unpatched_get_data = original

        def get_data(*args, **kwargs):
            data = original(*args, **kwargs)
            data["train"].dataloader = TimedLoader(data["train"].dataloader, self)
            return data

        oc_main.get_data = get_data

    def args(self, run: str) -> list[str]:
        settings = [x for pair in self.settings.items() for x in pair]
        return settings + ["--dataset-type", "synthetic", "--batch-size", str(self.batch),
                           "--epochs", "1", "--save-frequency", "0", "--logs", str(self.logs),
                           "--name", run, "--log-every-n-steps", "1", "--lr", str(LR),
                           "--wd", str(WD), "--warmup", str(WARMUP), "--seed", "0"]

    def loop(self, baton: Baton):
        """A thread body running one epoch; afterwards `logged` holds its per-step seconds as
        its log reports them (each includes the wait for the other loop's step)."""
        self.runs, self.baton, self.logged = self.runs + 1, baton, []
        run = f"run{self.runs}"

        def body():
            quiet = io.StringIO()
            with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
                self.main.main(self.args(run))
            log = (self.logs / run / "out.log").read_text()
            self.logged = [self.batch / float(m.group(1)) for m in STEP_LINE.finditer(log)]
            shutil.rmtree(self.logs / run, ignore_errors=True)

        return body


@contextlib.contextmanager
def quiet_logging(threads: int):
    """open_clip_train sets every logger to INFO and adds handlers; undo it afterwards."""
    handlers = list(logging.root.handlers)
    levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    root_level = logging.root.level
    logging.root.handlers[:] = [logging.NullHandler()]  # else logging.info() would basicConfig
    try:
        yield
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(root_level)
        for name in logging.root.manager.loggerDict:
            logging.getLogger(name).setLevel(levels.get(name, logging.WARNING))
        torch.set_num_threads(threads)


def bench_against_open_clip(figures: Figures, rounds: int, threads: int, logs: Path) -> None:
    data = training_data("mmcl", BATCH)
    oc = OpenClipRunner(logs)
    ratios, xs_times, oc_times, oc_logged, xs_data = [], [], [], [], []
    for r in range(rounds):
        names = ["open_clip_train", "xspec"] if r % 2 == 0 else ["xspec", "open_clip_train"]
        baton = Baton(names)
        timed = TimedData(data, baton, "xspec")
        before = len(oc.data_times)
        with quiet_logging(threads):
            baton.run({"open_clip_train": oc.loop(baton), "xspec": xspec_loop("mmcl", timed)})
        ratios.append(baton.paired("open_clip_train", "xspec", SKIP))
        xs_times += baton.times["xspec"][SKIP:-1]
        oc_times += baton.times["open_clip_train"][SKIP:-1]
        waits = baton.waits["open_clip_train"]
        oc_logged += [t - w for t, w in zip(oc.logged, waits)][SKIP:]
        xs_data += timed.data_times[SKIP:]
        del oc.data_times[before:before + SKIP]
        print(f"    round {r + 1}/{rounds}: xspec {median(baton.times['xspec']) * 1e3:.0f} ms, "
              f"open_clip_train {median(baton.times['open_clip_train']) * 1e3:.0f} ms per step; "
              f"paired ratio {ratios[-1]:.2f}", file=sys.stderr, flush=True)
    xs, ref = median(xs_times), median(oc_times)
    figures.add("xspec MMCL step, samples/s", BATCH / xs, "/s")
    figures.add("open_clip_train step, samples/s (from its log)", BATCH / median(oc_logged),
                "/s", note=f"timed here: {BATCH / ref:.0f}/s")
    figures.add("training samples/s, xspec / open_clip_train", median(ratios), "x", (">=", 1.0),
                note=f"rounds: {', '.join(f'{x:.2f}' for x in ratios)}")
    xs_d, oc_d = median(xs_data), median(oc.data_times)
    figures.add("  same, compute only (data time taken out of both)", (ref - oc_d) / (xs - xs_d),
                "x", note=f"data per step: xspec {xs_d * 1e3:.0f} ms, "
                          f"open_clip {oc_d * 1e3:.0f} ms")


def bench_ssl_floor(figures: Figures, rounds: int) -> None:
    from xspec.runtime.augment import SslAugmenter

    ssl_data = training_data("mmcl+ssl", BATCH, SslAugmenter(None))
    floor_data = training_data("mmcl", 2 * BATCH, samples=2 * SAMPLES)  # as many steps
    ratios, ssl_times, floor_times, ssl_dt, floor_dt = [], [], [], [], []
    for r in range(rounds):
        names = ["mmcl+ssl", "floor"] if r % 2 == 0 else ["floor", "mmcl+ssl"]
        baton = Baton(names)
        ssl, floor = TimedData(ssl_data, baton, "mmcl+ssl"), TimedData(floor_data, baton, "floor")
        baton.run({"mmcl+ssl": xspec_loop("mmcl+ssl", ssl), "floor": xspec_loop("mmcl", floor)})
        ratios.append(baton.paired("mmcl+ssl", "floor", SKIP))
        ssl_times += baton.times["mmcl+ssl"][SKIP:-1]
        floor_times += baton.times["floor"][SKIP:-1]
        ssl_dt += ssl.data_times[SKIP:]
        floor_dt += floor.data_times[SKIP:]
        print(f"    round {r + 1}/{rounds}: mmcl+ssl@{BATCH} {median(ssl_times) * 1e3:.0f} ms, "
              f"mmcl@{2 * BATCH} {median(floor_times) * 1e3:.0f} ms per step; paired ratio "
              f"{ratios[-1]:.2f}", file=sys.stderr, flush=True)
    figures.add(f"MMCL+SSL step (batch {BATCH}), ms", median(ssl_times) * 1e3, " ms",
                note=f"of which data {median(ssl_dt) * 1e3:.0f} ms")
    figures.add(f"floor: MMCL step on 2x batch ({2 * BATCH}), ms", median(floor_times) * 1e3,
                " ms", note=f"of which data {median(floor_dt) * 1e3:.0f} ms")
    figures.add("MMCL+SSL / floor", median(ratios), "x", ("<=", 1.25),
                note=f"rounds: {', '.join(f'{x:.2f}' for x in ratios)}")


def main() -> None:
    parser = cli(__doc__.splitlines()[0],
                 rounds={"type": int, "default": 3, "help": "rounds per comparison"},
                 skip_ssl={"action": "store_true", "help": "only the open_clip comparison"})
    args = parser.parse_args()
    threads = set_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random init
    models.register_configs()
    figures = Figures("train")
    print(f"training throughput, {threads} threads, batch {BATCH}, fp32, {ARCH}")
    logs = Path(tempfile.mkdtemp(prefix="xspec-bench-train-"))
    try:
        bench_against_open_clip(figures, args.rounds, threads, logs)
        if not args.skip_ssl:
            bench_ssl_floor(figures, args.rounds)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
