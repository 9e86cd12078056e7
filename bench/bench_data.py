"""Data pipeline: images/s of the training loader, poisoning and SSL augmentation off vs on, and
the loader's time per batch against the model's step time (the loader must not be the bottleneck).

Loader variants (Fashion-MNIST pairs in memory, batch 128, `TrainingData.batches`, in-process as
`run.workers = 0` does for in-memory data):
- plain: MMCL views, no poisoned pair;
- poisoned: MMCL views, 10 % of pairs with a BadNet patch of fresh noise at a random location
  (the paper's trigger, drawn per sample);
- poisoned+ssl: MMCL+SSL views on top (AutoAugment + EDA per pair).
Step: `encode` + `total_loss` + backward + AdamW step on batches assembled beforehand, for the
tiny model (`xspec-vit-tiny`), MMCL and MMCL+SSL. Each round takes one batch (or step) of
every variant, in alternating order; ratios are medians of the per-round ratios.

Usage: .venv/bin/python bench/bench_data.py [--rounds 20] [--json out.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import FASHION, Figures, cli, interleave, paired_ratio, pooled, set_threads  # noqa: E402

from xspec.runtime import models  # noqa: E402
from xspec.runtime.attacks import make_attack  # noqa: E402
from xspec.runtime.data import open_pairs  # noqa: E402
from xspec.runtime.objectives import needed_views, total_loss  # noqa: E402
from xspec.runtime.optim import adamw  # noqa: E402
from xspec.runtime.pipeline import Normalizer, TrainingData  # noqa: E402
from xspec.runtime.train import encode  # noqa: E402

ARCH = "xspec-vit-tiny"
SAMPLES, BATCH = 2560, 128
ATTACK = {"kind": "badnet", "target": "bag", "poisons": SAMPLES // 10,
          "trigger": {"size": 8, "pattern": "gaussian_per_image", "location": "random"}}
NO_ATTACK = {"kind": "none"}


class Bench:
    def __init__(self):
        from xspec.runtime.augment import SslAugmenter

        torch.manual_seed(0)
        self.model = models.create(ARCH, "scratch", torch.device("cpu"))
        mean, std, size = models.image_stats(self.model)
        self.pairs = open_pairs({"format": "fashion_mnist", "split": "train", "path": FASHION,
                                 "size": SAMPLES}, size)
        self.tokenizer, self.normalize = models.tokenizer(ARCH), Normalizer.of(mean, std)
        self.augmenter = SslAugmenter(None)
        self.optimizer = adamw(self.model, 1e-4, 0.1)
        self.epoch = 0

    def data(self, objective: str, attack_cfg: dict) -> TrainingData:
        attack = make_attack(attack_cfg, 0)
        captions, poisoned = list(self.pairs.captions), np.zeros(SAMPLES, dtype=bool)
        for i in attack.select(captions):
            captions[i], poisoned[i] = attack.poison_caption(int(i), captions[i]), True
        views = needed_views(objective)
        return TrainingData(self.pairs, np.arange(SAMPLES), captions, poisoned, attack,
                            self.tokenizer, self.normalize, BATCH, 0, views,
                            self.augmenter if "image_aug" in views else None, 0)

    def loader(self, data: TrainingData):
        """One batch per call, from an endless run of epochs (new order and augmentations)."""
        def batches():
            while True:
                self.epoch += 1
                yield from data.batches(self.epoch)

        iterator = batches()
        next(iterator)  # warm-up

        def run() -> list[float]:
            start = time.perf_counter()
            next(iterator)
            return [time.perf_counter() - start]

        return run

    def step(self, objective: str, data: TrainingData):
        """One training step per call, on batches assembled beforehand."""
        batches = [b for b, _ in zip(data.batches(0), range(4))]
        count = [0]

        def run() -> list[float]:
            batch = batches[count[0] % len(batches)]
            count[0] += 1
            start = time.perf_counter()
            features = encode(self.model, batch, torch.device("cpu"))
            loss, _ = total_loss(objective, {}, features, self.model.logit_scale.exp())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return [time.perf_counter() - start]

        run()  # warm-up
        return run


def main() -> None:
    parser = cli(__doc__.splitlines()[0],
                 rounds={"type": int, "default": 20,
                         "help": "alternating rounds, one batch or step of each variant per round"})
    args = parser.parse_args()
    threads = set_threads(args.threads)
    models.register_configs()
    figures = Figures("data")
    print(f"data pipeline: batch {BATCH}, {threads} threads, {ARCH}")
    bench = Bench()
    plain, poisoned = bench.data("mmcl", NO_ATTACK), bench.data("mmcl", ATTACK)
    ssl = bench.data("mmcl+ssl", ATTACK)
    variants = {"loader plain": bench.loader(plain), "loader poisoned": bench.loader(poisoned),
                "loader poisoned+ssl": bench.loader(ssl),
                "step mmcl": bench.step("mmcl", poisoned),
                "step mmcl+ssl": bench.step("mmcl+ssl", ssl)}
    t = interleave(variants, args.rounds, log=False)
    for name in ("plain", "poisoned", "poisoned+ssl"):
        figures.add(f"loader {name}, images/s", BATCH / pooled(t[f"loader {name}"]), "/s")
    figures.add("loader time, poisoned / plain",
                paired_ratio(t["loader poisoned"], t["loader plain"]), "x")
    figures.add("loader time, poisoned+ssl / plain",
                paired_ratio(t["loader poisoned+ssl"], t["loader plain"]), "x")
    figures.add("loader / step time, MMCL", paired_ratio(t["loader poisoned"], t["step mmcl"]),
                "x", ("<", 1.0), note=f"step {pooled(t['step mmcl']) * 1e3:.0f} ms")
    figures.add("loader / step time, MMCL+SSL",
                paired_ratio(t["loader poisoned+ssl"], t["step mmcl+ssl"]), "x", ("<", 1.0),
                note=f"step {pooled(t['step mmcl+ssl']) * 1e3:.0f} ms")
    figures.dump(args.json)


if __name__ == "__main__":
    main()
