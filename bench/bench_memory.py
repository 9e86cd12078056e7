"""Memory at scale: opening a 3 M-row CleanCLIP CSV, and loader workers' unique memory.

1. open: `open_pairs` on a CSV of `--rows` rows (CC3M-like paths and captions), each variant in a
   fresh interpreter (bench/memory_probe.py): the whole process's peak resident set (VmHWM since
   the process started, imports included) in decimal MB and GiB, beside the floors measured in
   the same run (the interpreter, libcublasLt loaded alone, `import torch` alone, torch with no
   visible GPU and malloc tuned), the peak added by the open itself (VmHWM reset after the
   imports), a scan of every caption after the open, the list-of-dicts reader xspec used before
   (`csv.DictReader`, up to 3 M rows), and a pretrain node's imports (open_clip). The first
   open converts the CSV in a child process; that child's
   peak, run alone, is printed beside.
2. workers: a TrainingData over that CSV (every row points at one of 64 small JPEGs) with 2
   loader workers; the unique set size (USS, /proc/PID/smaps_rollup Private_*) of each worker
   after an epoch of 1,024 pairs and after 8,192 more: the growth must be small (copy-on-read
   of Python objects would grow it with every pair touched), split into its dirty (copied) and
   clean (file) pages, with the workers' whole resident sets beside.

`--python PATH` runs the open probes in another interpreter (say a venv holding torch's CPU build,
whose `import torch` is far smaller than the CUDA build's); this repository goes on its
PYTHONPATH, and the figures that need open_clip are left out where it does not import.

Usage: .venv/bin/python bench/bench_memory.py [--rows 3000000] [--python PATH] [--json out.json]
"""

from __future__ import annotations

import json
import os
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


PROBE = Path(__file__).resolve().parent / "memory_probe.py"
REPO = PROBE.parent.parent
PYTHON = sys.executable  # --python replaces it


def probe(variant: str, path: Path, **env: str) -> dict:
    """bench/memory_probe.py's figures for one variant, in a fresh interpreter."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([PYTHON, str(PROBE), variant, str(path)], capture_output=True,
                            text=True, check=True,
                            env={**os.environ, "PYTHONPATH": pythonpath, **env})
    return json.loads(result.stdout.strip().splitlines()[-1])


def imports(module: str) -> bool:
    """Whether the probes' interpreter imports `module`."""
    return subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


def torch_build() -> str:
    return subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def sizes(nbytes: float) -> str:
    """Bytes as the issue's decimal MB and as GiB (what /proc's kB / 2^20 gives), side by side."""
    return f"{nbytes / 1e6:.0f} MB = {nbytes / 2**30:.3f} GiB"


MB = 1e6  # the bounds are decimal MB


def open_figures(figures: Figures, path: Path, n_rows: int) -> None:
    """Each process in a fresh interpreter, all in this run: the floors (the interpreter,
    libcublasLt alone, `import torch` alone, and torch with the process's own memory settings
    tuned) beside the open, whose first run converts the CSV to the cached index in a
    child process (xspec.runtime.column_cache) and whose later runs map it."""
    cache = {"XDG_CACHE_HOME": str(path.parent / "cache")}
    out = {"first": probe("columnar", path, **cache)}
    # the list-of-dicts reader holds ~0.5 GB per million rows: compared up to 3 M rows only
    old_reader = ("dicts",) if n_rows <= 3_000_000 else ()
    node = ("open_clip", "node") if imports("open_clip") else ()
    for name in ("bare", "cublaslt", "torch", "columnar", "scan", *old_reader, *node):
        out[name] = probe(name, path, **cache)
    out["tuned"] = probe("tuned", path, CUDA_VISIBLE_DEVICES="", MALLOC_ARENA_MAX="2")
    bound = 500 if n_rows <= 3_000_000 else 1000  # the bounds: 3 M and 12 M rows
    floor_figures(figures, out, bound)
    open_rows(figures, out, bound, path)


def floor_figures(figures: Figures, out: dict, bound: int) -> None:
    figures.add("process peak: the interpreter alone", out["bare"]["hwm"] / MB, " MB",
                note=sizes(out["bare"]["hwm"]))
    lib = out["cublaslt"]
    figures.add("process peak: libcublasLt alone (ctypes, no torch)",
                lib["hwm"] / MB if lib["library"] else None, " MB",
                note=f"{lib['library']}: {sizes(lib['hwm'])}; torch's CUDA build loads it at "
                     "import, GPU or not")
    torch_hwm = out["torch"]["hwm"]
    figures.add("process peak: import torch alone", torch_hwm / MB, " MB", ("<=", bound),
                note=f"{sizes(torch_hwm)} with torch {torch_build()}: the floor of any "
                     "process that imports this torch")
    tuned = out["tuned"]
    figures.add("process peak: import torch, no visible GPU, MALLOC_ARENA_MAX=2, trimmed",
                tuned["hwm"] / MB, " MB",
                note=f"{sizes(tuned['hwm'])}; resident after malloc_trim: "
                     f"{sizes(tuned['trimmed_rss'])}")


def open_rows(figures: Figures, out: dict, bound: int, path: Path) -> None:
    new, first = out["columnar"], out["first"]
    old = out.get("dicts", {"seconds": float("nan"), "added": float("nan")})
    figures.add("first open (converts the CSV to the cached index), process peak", first["hwm"] / MB,
                " MB", ("<=", bound),
                note=f"{sizes(first['hwm'])}; {first['seconds']:.1f} s; open added "
                     f"+{first['added'] / MB:.1f} MB")
    figures.add("the conversion's own process (no torch), peak", converter_peak_gb(path), " GiB",
                note="Arrow's CSV block pipeline and pyarrow, whatever the row count")
    figures.add(f"open {new['n']:,} rows, seconds", new["seconds"], " s",
                note=f"list of dicts: {old['seconds']:.1f} s" if "dicts" in out else
                "the list of dicts is compared up to 3 M rows")
    figures.add("open, peak memory added", new["added"] / MB, " MB", ("<=", 500),
                note=f"pyarrow imported: {new['pyarrow']}" + (
                    f"; list of dicts: +{old['added'] / MB:.0f} MB" if "dicts" in out else ""))
    figures.add("open, process peak (torch, registry, index)", new["hwm"] / MB, " MB",
                ("<=", bound), note=f"{sizes(new['hwm'])}; the imports alone peaked at "
                                    f"{sizes(new['imports_hwm'])}")
    figures.add("open, process peak less import torch's (xspec's share)",
                (new["hwm"] - out["torch"]["hwm"]) / MB, " MB",
                note="xspec's modules, pydantic, PIL, the registry and the index")
    scan = out["scan"]
    figures.add("open, then read every caption in order, process peak", scan["hwm"] / MB, " MB",
                ("<=", bound), note=f"{sizes(scan['hwm'])}; {scan['scan_seconds']:.1f} s; the "
                                    f"scan added {(scan['hwm'] - scan['open_hwm']) / MB:.0f} MB")
    if "node" not in out:
        return  # the probes' interpreter has no open_clip
    node, clip = out["node"], out["open_clip"]["hwm"]
    figures.add("a pretrain node's imports + open, process peak", node["hwm"] / MB, " MB",
                note=f"{sizes(node['hwm'])}; of it import torch + open_clip alone: "
                     f"{sizes(clip)} (open_clip's torchvision.ops imports torch._dynamo: "
                     f"sympy, triton); xspec's share: {(node['hwm'] - clip) / MB:.0f} MB")


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


def private_mb(pid: int) -> dict[str, float]:
    """A process's pages (/proc/PID/smaps_rollup), decimal MB: `dirty` (Private_Dirty: anonymous
    and copied pages, where copy-on-read of per-row Python objects would show), `clean`
    (Private_Clean: file pages no other process has mapped; a memory-mapped index grew this) and
    `rss` (all resident pages, shared ones too)."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean", "Private_Dirty", "Rss")):
            found[line.split(":")[0][-5:].lower()] = int(line.split()[1]) * 1024 / 1e6
    return found


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
    first = [private_mb(p) for p in pids]
    data.indices = everything[1024:]
    for _ in data.raw_batches(2):
        pass
    after = [private_mb(p) for p in pids]
    uss = [[x["clean"] + x["dirty"] for x in xs] for xs in (first, after)]
    figures.add("worker USS after 1,024 pairs", max(uss[0]), " MB",
                note=", ".join(f"{x:.0f}" for x in uss[0]))
    figures.add("worker USS growth over 8,192 more pairs", max(b - a for a, b in zip(*uss)),
                " MB", ("<=", 16.0),
                note=f"of a {n:,}-row CSV; after: " + ", ".join(f"{x:.0f}" for x in uss[1]))
    figures.add("  of it Private_Dirty (anonymous, copied pages)",
                max(b["dirty"] - a["dirty"] for a, b in zip(first, after)), " MB", ("<=", 16.0),
                note="copy-on-read of per-row objects would grow this")
    figures.add("  of it Private_Clean (file pages only this worker mapped)",
                max(b["clean"] - a["clean"] for a, b in zip(first, after)), " MB",
                note="the index is read from the page cache, not mapped")
    figures.add("worker resident set (RSS, shared pages too) growth over the 8,192 pairs",
                max(b["rss"] - a["rss"] for a, b in zip(first, after)), " MB",
                note="after: " + ", ".join(f"{x['rss']:.0f}" for x in after))


def main() -> None:
    parser = cli(__doc__.splitlines()[0], rows={"type": int, "default": 3_000_000},
                 part={"default": "open,workers"}, python={"default": sys.executable})
    args = parser.parse_args()
    global PYTHON
    PYTHON = args.python
    figures = Figures("memory")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # the cached index goes too
        path = Path(tmp) / "pairs.csv"
        write_csv(path, args.rows)
        print(f"memory: {args.rows:,}-row CSV, {path.stat().st_size / 2**20:.0f} MB")
        if "open" in args.part:
            open_figures(figures, path, args.rows)
        if "workers" in args.part:
            worker_figures(figures, path)
    figures.dump(args.json)


if __name__ == "__main__":
    main()
