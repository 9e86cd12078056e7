"""Memory at scale: opening a 3 M-row CleanCLIP CSV, and loader workers' unique memory.

1. open: `open_pairs` on a CSV of `--rows` rows (CC3M-like paths and captions), each variant in a
   fresh interpreter: seconds and peak resident memory added by the open (VmHWM reset after the
   imports, so torch's own import, 0.49 GB for the CUDA 13 build, is not counted; the absolute
   peak is printed too), beside the list-of-dicts reader xspec used before (`csv.DictReader`),
   measured in the same run. The first open converts the CSV in a child process; its peak is
   printed beside.
2. workers: a TrainingData over that CSV (every row points at one of 64 small JPEGs) with 2
   loader workers; the unique set size (USS, /proc/PID/smaps_rollup Private_*) of each worker
   after an epoch of 1,024 pairs and after 8,192 more: the growth must be small (copy-on-read
   of Python objects would grow it with every pair touched).

Usage: .venv/bin/python bench/bench_memory.py [--rows 3000000] [--json out.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figures, cli  # noqa: E402

WORDS = ("a photo of the red bus parked near an old stone bridge over the river on a grey "
         "winter morning with people walking").split()


def write_csv(path: Path, rows: int, images: int = 64) -> None:
    import numpy as np
    from PIL import Image

    folder = path.parent / "img"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(images):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"{i}.jpg")
    with open(path, "w") as handle:
        handle.write("image,caption\n")
        for start in range(0, rows, 100_000):
            lines = []
            for i in range(start, min(rows, start + 100_000)):
                n = 6 + i % 11
                caption = " ".join(WORDS[(i + k * 7) % len(WORDS)] for k in range(n))
                lines.append(f"img/{i % images}.jpg,{caption} {i}\n")
            handle.writelines(lines)


PROBE = r"""
import json, resource, sys, time
from pathlib import Path
import torch  # noqa: F401  (counted in the baseline, as in a node)

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 2**20  # GB

path, variant = sys.argv[1], sys.argv[2]
torch_gb = status("VmRSS")
from xspec.extend.plugins import load_builtins  # the registry a node loads anyway
from xspec.runtime.data import open_pairs
load_builtins()
Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
start = time.perf_counter()
if variant == "columnar":
    pairs = open_pairs({"format": "csv", "path": path, "image_key": "image",
                        "caption_key": "caption"}, 224)
    n = len(pairs.captions)
else:
    import csv, os
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    base_dir = os.path.dirname(os.path.abspath(path))
    paths = [os.path.join(base_dir, r["image"]) for r in rows]
    captions = [r["caption"] for r in rows]
    n = len(captions)
seconds = time.perf_counter() - start
print(json.dumps({"n": n, "seconds": seconds, "added_gb": status("VmHWM") - base,
                  "peak_gb": status("VmHWM"), "base_gb": base, "torch_gb": torch_gb,
                  "pyarrow": "pyarrow" in sys.modules}))
"""


def open_figures(figures: Figures, path: Path) -> None:
    """columnar twice: the first open converts the CSV to the memory-mapped cache in a child
    process (xspec.runtime.column_cache), the second maps it."""
    import os

    out = {}
    env = {**os.environ, "XDG_CACHE_HOME": str(path.parent / "cache")}
    for variant, name in (("columnar", "first"), ("columnar", "columnar"), ("dicts", "dicts")):
        result = subprocess.run([sys.executable, "-c", PROBE, str(path), variant],
                                capture_output=True, text=True, check=True, env=env)
        out[name] = json.loads(result.stdout.strip().splitlines()[-1])
    first = out["first"]
    bound = 0.5 if first["n"] <= 3_000_000 else 1.0  # the bounds: 3 M and 12 M rows
    figures.add("first open (converts to the mapped cache), absolute peak of the process",
                first["peak_gb"], " GB", ("<=", bound),
                note=f"{first['seconds']:.1f} s; +{first['added_gb'] * 1024:.0f} MB")
    figures.add("the conversion's own process (no torch), peak", converter_peak_gb(path), " GB",
                note="Arrow's CSV block pipeline and pyarrow, whatever the row count")
    new, old = out["columnar"], out["dicts"]
    figures.add(f"open {new['n']:,} rows, seconds", new["seconds"], " s",
                note=f"list of dicts: {old['seconds']:.1f} s")
    figures.add("open, peak memory added", new["added_gb"] * 1024, " MB", ("<=", 500),
                note=f"absolute peak {new['peak_gb']:.3f} GB with torch; pyarrow imported: "
                     f"{new['pyarrow']}; list of dicts: +{old['added_gb']:.2f} GB")
    figures.add("open, absolute peak of the process (torch imported)", new["peak_gb"], " GB",
                ("<=", bound), note=f"the process held {new['base_gb']:.3f} GB after importing "
                                    f"torch, xspec and its registry, before the open; "
                                    f"{new['torch_gb']:.3f} GB after torch alone")
    figures.add("open, absolute peak less torch's own import", new["peak_gb"] - new["torch_gb"],
                " GB", note="xspec's share of the peak: its modules, registry and the index")


CONVERT = r"""
import runpy, sys
from pathlib import Path
sys.argv = ["column_cache"] + sys.argv[1:]
runpy.run_module("xspec.runtime.column_cache", run_name="__main__")
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM"):
        print(int(line.split()[1]) / 2**20)
"""


def converter_peak_gb(path: Path) -> float:
    """The peak of the child process the first open starts (xspec.runtime.column_cache), run
    alone (a child's ru_maxrss would count the parent's pages at the fork)."""
    from xspec.runtime.column_cache import BLOCK

    target = path.parent / "convert-alone" / "x.json"
    target.parent.mkdir(exist_ok=True)
    out = subprocess.run([sys.executable, "-c", CONVERT, str(path), '["image", "caption"]',
                          "caption", str(target), str(BLOCK)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def uss_mb(pid: int) -> float:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean", "Private_Dirty")):
            total += int(line.split()[1])
    return total / 1024


def worker_figures(figures: Figures, path: Path) -> None:
    import numpy as np

    from xspec.runtime import models
    from xspec.runtime.attacks import make_attack
    from xspec.runtime.columns import Edited
    from xspec.runtime.data import open_pairs
    from xspec.runtime.pipeline import Normalizer, TrainingData

    pairs = open_pairs({"format": "csv", "path": str(path), "image_key": "image",
                        "caption_key": "caption"}, 64)
    n = len(pairs.captions)
    rng = np.random.default_rng(0)
    data = TrainingData(pairs, np.sort(rng.choice(n, 9216, replace=False)), Edited(pairs.captions),
                        np.zeros(n, bool), make_attack({"kind": "none"}, 0),
                        models.tokenizer("xspec-vit-tiny"), Normalizer.of((0.5,) * 3, (0.5,) * 3),
                        128, 0, {"image", "text"}, None, 2)
    data.indices, everything = data.indices[:1024], data.indices
    for _ in data.raw_batches(1):
        pass
    pids = [w.pid for w in data.loader._loader._iterator._workers]
    first = [uss_mb(p) for p in pids]
    data.indices = everything[1024:]
    for _ in data.raw_batches(2):
        pass
    after = [uss_mb(p) for p in pids]
    growth = max(b - a for a, b in zip(first, after))
    figures.add("worker USS after 1,024 pairs", max(first), " MB",
                note=", ".join(f"{x:.0f}" for x in first))
    figures.add("worker USS growth over 8,192 more pairs", growth, " MB", ("<=", 16.0),
                note=f"of a {n:,}-row CSV; after: " + ", ".join(f"{x:.0f}" for x in after))


def main() -> None:
    parser = cli(__doc__.splitlines()[0], rows={"type": int, "default": 3_000_000},
                 part={"default": "open,workers"})
    args = parser.parse_args()
    figures = Figures("memory")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.csv"
        write_csv(path, args.rows)
        print(f"memory: {args.rows:,}-row CSV, {path.stat().st_size / 2**20:.0f} MB")
        if "open" in args.part:
            open_figures(figures, path)
        if "workers" in args.part:
            worker_figures(figures, path)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
