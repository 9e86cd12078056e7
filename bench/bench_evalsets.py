"""Evaluation sets: the cost of one evaluation grows linearly with the number of sets.

Writes Fashion-MNIST test images as JPEGs with a labels CSV, then times, in alternating rounds,
one evaluation call (what a training node runs at every epoch's end: classifier build, decode,
trigger, image tower, top-1/top-5/ASR) of an `Evaluator` whose node config has
- one set: the primary set only;
- two sets: the primary set and `[evaluate.sets.b]`, the same images from their own files;
- three sets: and `[evaluate.sets.c]`, the same images restricted to a 4-class subset (fewer
  images: its cost is below a whole set's).
Each set builds its classifier once and decodes each of its images once per call, so two sets
should cost about twice one (goal: <= 2.1x) and a set's scores must not depend on the sets
beside it.

Usage: .venv/bin/python bench/bench_evalsets.py [--images 1000] [--jpeg-side 224] [--rounds 7]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import Figures, cli, interleave, paired_ratio, pooled, set_threads  # noqa: E402
from bench_eval import ARCH, ATTACK, write_jpegs  # noqa: E402

from xspec.runtime import models  # noqa: E402
from xspec.runtime.attacks import make_attack  # noqa: E402
from xspec.runtime.evaluator import Evaluator  # noqa: E402
from xspec.runtime.pipeline import Normalizer  # noqa: E402
from xspec.spec.tables.settings import RunSettings  # noqa: E402

METRICS = ["top1", "top5", "asr"]


def evaluators(root: Path, images: int, side: int, workers: int) -> tuple:
    primary = write_jpegs(root / "a", images, side)
    other = write_jpegs(root / "b", images, side)
    torch.manual_seed(0)
    model = models.create(ARCH, "scratch", torch.device("cpu")).eval()
    mean, std, size = models.image_stats(model)
    made = {}
    sets = {"b": {"source": other}, "c": {"source": other, "subset": [5, 7, 8, 9]}}
    for name, chosen in (("one set", {}), ("two sets", {"b": sets["b"]}),
                         ("three sets", sets)):
        cfg = {"source": primary, "metrics": METRICS, "sets": chosen}
        made[name] = Evaluator(cfg, make_attack({**ATTACK, "poisons": 1}, 0), models.tokenizer(ARCH),
                               Normalizer.of(mean, std), size, torch.device("cpu"),
                               RunSettings(workers=workers))
    return model, made


def main() -> None:
    parser = cli(__doc__.splitlines()[0],
                 images={"type": int, "default": 1000, "help": "images per set"},
                 jpeg_side={"type": int, "default": 224, "help": "side of the written JPEGs"},
                 workers={"type": int, "default": 0, "help": "decoding worker processes"},
                 rounds={"type": int, "default": 7, "help": "alternating rounds"})
    args = parser.parse_args()
    args.threads = set_threads(args.threads)
    models.register_configs()
    figures = Figures("evalsets")
    root = Path(tempfile.mkdtemp(prefix="xspec-bench-evalsets-"))
    try:
        model, made = evaluators(root, args.images, args.jpeg_side, args.workers)
        scores = {}

        def timed(name):
            def call() -> list[float]:
                import time

                start = time.perf_counter()
                scores[name] = made[name](model)
                return [time.perf_counter() - start]
            return call

        print(f"evaluation sets: {args.images} JPEGs of {args.jpeg_side} px per set, "
              f"{args.threads} threads, {args.workers} workers, {ARCH}")
        times = interleave({name: timed(name) for name in made}, args.rounds)
        rows = {name: sorted(getattr(s, "rows", [])) for name, s in scores.items()}
        if dict(scores["one set"]) != dict(scores["two sets"]) or not set(
                rows["two sets"]) <= set(rows["three sets"]):
            raise SystemExit("a set's scores changed with the sets beside it")
        for name in made:
            figures.add(f"one evaluation, {name}, s", pooled(times[name]), " s")
        two = paired_ratio(times["two sets"], times["one set"])
        three = paired_ratio(times["three sets"], times["one set"])
        print(f"two sets / one set: {two:.3f}x; three sets (one a 4-class subset) / one set: "
              f"{three:.3f}x")
        figures.add("evaluation time, two sets / one set", two, "x", ("<=", 2.1))
        figures.add("evaluation time, three sets (one a 4-of-10-class subset) / one set", three,
                    "x", ("<=", 3.15))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
