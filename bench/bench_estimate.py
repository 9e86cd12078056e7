"""`xspec plan`'s compute estimate against what was measured or published, and a way to refresh
its rates.

Checks (no training; a second):
1. the quickstart: the estimate (CPU-minutes of the 2-core machine the CPU rates come from)
   against its measured wall time (README: 3 min 36 s on 2 cores; bench/RESULTS.md: 226 s);
2. the paper's pre-training: RN50, CC6M (6 M pairs), 64 epochs, evaluated on ImageNet-1k val
   (clean + triggered) after every epoch, against the original code's README: "8 Nvidia A-100
   (40 GB) GPUs ... MMCL took about 24-28 hours and ... MMCL + SSL about 36-40 hours"
   (vsahil/attack-cleanclip README.md, line 103), i.e. 192-224 and 288-320 A100-hours.

Refresh: `--record ARCH DEVICE TRAIN_PER_S EVAL_PER_S SOURCE` writes one rate into
xspec/data/throughput.json (e.g. from bench_gpu.py's figures on a new GPU class).

Usage: .venv/bin/python bench/bench_estimate.py [--json out.json]
       .venv/bin/python bench/bench_estimate.py --record ViT-B-32 H100 1650 8300 "measured: ..."
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Figures  # noqa: E402

from xspec.compiler.estimate import estimate, record_rate  # noqa: E402
from xspec.study import open_study  # noqa: E402

QUICKSTART_WALL_S = 216  # README: 3 min 36 s
PAPER_HOURS = {"mmcl": (24, 28), "mmcl+ssl": (36, 40)}  # on 8 A100s
PAPER_SPEC = """
[study]
name = "paper-cost"
[data]
train = {{ format = "csv", path = "cc6m.csv", size = 6_000_000 }}
eval = {{ format = "labels_csv", path = "imagenet-val.csv", classes = "imagenet1k" }}
[attack]
kind = "badnet"
target = "banana"
poisons = 3000
[model]
arch = "RN50-quickgelu"
[pretrain]
objective = "{objective}"
epochs = 64
"""


def paper_gpu_hours(objective: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "paper.toml"
        spec.write_text(PAPER_SPEC.format(objective=objective))
        cost = estimate(open_study(spec).plan, "A100")
    assert not cost.kinds["pretrain"].unknown, cost.kinds["pretrain"].unknown
    return cost.amount(cost.kinds["pretrain"].seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--record", nargs=5,
                        metavar=("ARCH", "DEVICE", "TRAIN_PER_S", "EVAL_PER_S", "SOURCE"))
    args = parser.parse_args()
    if args.record:
        arch, device, train, evaluate, source = args.record
        print("wrote", record_rate(arch, device, float(train), float(evaluate), source))
        return
    figures = Figures("estimate")
    quick = estimate(open_study(ROOT / "specs" / "quickstart.toml").plan)
    minutes = quick.amount(quick.total)
    figures.add("quickstart: estimate / measured wall time (2 cores)",
                round(minutes * 60 / QUICKSTART_WALL_S, 2), "x",
                note=f"{minutes:.1f} min estimated, {QUICKSTART_WALL_S / 60:.1f} min measured")
    for objective, (low, high) in PAPER_HOURS.items():
        hours = paper_gpu_hours(objective)
        figures.add(f"paper pre-training {objective}: estimate / stated, 8 A100 wall hours",
                    round(hours / 8 / ((low + high) / 2), 2), "x",
                    note=f"{hours:.0f} A100-h = {hours / 8:.1f} h on 8; stated {low}-{high} h")
    figures.dump(args.json)


if __name__ == "__main__":
    main()
