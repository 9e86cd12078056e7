"""One process of bench_memory.py's open figures, in a fresh interpreter; prints one JSON line.

    python bench/memory_probe.py VARIANT CSV_PATH

Peaks are /proc/self/status VmHWM: the process's whole peak resident set since it started
(imports included, never reset), and, for the open variants, the peak added by the open (VmHWM
reset after the imports with /proc/self/clear_refs). Variants:

  bare      the interpreter alone
  cublaslt  libcublasLt.so (torch's CUDA build loads it at `import torch`) loaded alone with
            ctypes, without torch: what this one CUDA library's load and static initialisers cost
  torch     `import torch` alone
  tuned     `import torch` with no visible GPU (CUDA_VISIBLE_DEVICES=""), MALLOC_ARENA_MAX=2
            (set by the caller) and malloc_trim(0) + gc afterwards: whether anything of the
            process's own settings moves torch's floor
  columnar  torch, xspec's registry (what a node loads anyway) and `open_pairs` on the CSV
  dicts     torch and the list-of-dicts reader xspec used before (csv.DictReader)
  scan      as columnar, then reads every caption once in order (an attack that looks for
            captions naming its target does): the whole caption column passes through
  open_clip torch and open_clip (which every training node imports)
  node      torch, a pretrain node's imports (xspec.runtime.node and the pretrain stage, which
            imports open_clip) and `open_pairs`: what a real training node holds at the open
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def status(field: str) -> int:
    """A /proc/self/status field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def cublaslt() -> str | None:
    """Load libcublasLt from torch's nvidia-* wheels without importing torch (None: no such
    library, e.g. a CPU build)."""
    import ctypes
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    for folder in (spec.submodule_search_locations if spec else []):
        for found in sorted(Path(folder).glob("**/libcublasLt.so*")):
            ctypes.CDLL(str(found), mode=ctypes.RTLD_GLOBAL)
            return found.name
    return None


def open_csv(path: str, variant: str) -> int:
    import csv
    import os

    from xspec.runtime.data import open_pairs

    if variant == "dicts":
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        base_dir = os.path.dirname(os.path.abspath(path))
        paths = [os.path.join(base_dir, r["image"]) for r in rows]  # noqa: F841  (held, as before)
        return len([r["caption"] for r in rows])
    pairs = open_pairs({"format": "csv", "path": path, "image_key": "image",
                        "caption_key": "caption"}, 224)
    return len(pairs.captions)


def _captions(path: str):
    from xspec.runtime.data import pair_captions

    return pair_captions({"format": "csv", "path": path, "image_key": "image",
                          "caption_key": "caption"})


def main(variant: str, path: str) -> dict:
    out: dict = {"variant": variant}
    if variant == "cublaslt":
        out["library"] = cublaslt()
    if variant in ("torch", "tuned", "columnar", "scan", "dicts", "node",
                   "open_clip"):
        import torch  # noqa: F401

        out["torch_rss"] = status("VmRSS")
    if variant == "tuned":
        import ctypes
        import gc

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        out["trimmed_rss"] = status("VmRSS")
    if variant == "open_clip":
        import open_clip  # noqa: F401
    if variant == "node":
        import xspec.runtime.node  # noqa: F401
        import xspec.runtime.stages.pretrain  # noqa: F401
    if variant in ("columnar", "scan", "node"):
        from xspec.extend.plugins import load_builtins

        load_builtins()  # as a node's registry look-up does
    if variant in ("columnar", "scan", "dicts", "node"):
        import csv  # noqa: F401  (the readers' modules are imports, not the open)

        import xspec.runtime.data  # noqa: F401
        import xspec.runtime.formats.csv_pairs  # noqa: F401

        out["imports_hwm"], out["base_rss"] = status("VmHWM"), status("VmRSS")
        out["pyarrow_before"] = "pyarrow" in sys.modules
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        start = time.perf_counter()
        out["n"] = open_csv(path, variant)
        out["seconds"] = time.perf_counter() - start
        if variant == "scan":
            out["open_hwm"] = status("VmHWM")
            start = time.perf_counter()
            out["target"] = sum("bridge 7" in caption for caption in _captions(path))
            out["scan_seconds"] = time.perf_counter() - start
        out["added"] = status("VmHWM") - out["base_rss"]
        out["pyarrow"] = "pyarrow" in sys.modules
        out["hwm"] = max(out["imports_hwm"], status("VmHWM"))
    else:
        out["hwm"] = status("VmHWM")
    out["rss"] = status("VmRSS")
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
