"""`xspec data pack`: write a CSV or Fashion-MNIST pair source as WebDataset shards.

The layout is img2dataset's: `00000.tar, 00001.tar, ...`, each sample `KEY.<image ext>`,
`KEY.txt` (caption) and `KEY.json` ({"key", "caption", "source_index"}), with `00000_stats.json`
per shard and a `sizes.json`. CSV images are stored as their files' bytes (no re-encoding);
Fashion-MNIST's 28x28 images are encoded as PNG (lossless). Tars are written with fixed member
metadata, so packing the same data twice gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xspec.errors import DataError
from xspec.store.workspace import atomic_write_json

IMAGE_EXTS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}


@dataclass(frozen=True)
class Packed:
    pattern: str  # the brace pattern to put in a spec's data.train.path
    shards: int
    samples: int
    skipped: int  # rows whose image file is missing or of an unknown type


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
    return info, io.BytesIO(data)


def _samples_csv(cfg: dict):
    from xspec.runtime.data import open_pairs

    pairs = open_pairs(cfg, size=1)
    for i in range(len(pairs.captions)):
        path = pairs.images.paths[i]
        ext = IMAGE_EXTS.get(os.path.splitext(path)[1].lower())
        try:
            data = Path(path).read_bytes() if ext else None
        except OSError:
            data = None
        yield i, pairs.captions[i], ext, data


def _samples_fashion(cfg: dict):
    from PIL import Image

    from xspec.runtime.formats.fashion_mnist import fashion_caption, read_idx

    prefix = "train" if cfg.get("split", "train") == "train" else "t10k"
    root = Path(cfg.get("path", "/usr/share/datasets/fashion-mnist"))
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    for i in range(min(cfg.get("size") or len(labels), len(labels))):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(images[i])).save(buffer, format="PNG")
        yield i, fashion_caption(int(labels[i]), i), "png", buffer.getvalue()


def pack(cfg: dict, out: Path, shard_size: int = 1000) -> Packed:
    """Write `cfg` (a csv or fashion_mnist pair source) as shards of `shard_size` samples."""
    if shard_size < 1:
        raise DataError(f"--shard-size: expected >= 1, got {shard_size}")
    if cfg["format"] not in ("csv", "fashion_mnist"):
        raise DataError(f"data pack: cannot pack format {cfg['format']!r}; csv or fashion_mnist")
    if cfg["format"] == "fashion_mnist" and cfg.get("split", "train") not in ("train", "test"):
        raise DataError(f"--fashion-mnist: unknown split {cfg['split']!r}; allowed: train, test")
    out.mkdir(parents=True, exist_ok=True)
    samples = _samples_csv(cfg) if cfg["format"] == "csv" else _samples_fashion(cfg)
    sizes, written, skipped, tar, shard = {}, 0, 0, None, -1
    for index, caption, ext, data in samples:
        if data is None:
            skipped += 1
            continue
        if written % shard_size == 0:
            shard = _close(tar, out, shard, sizes)
            tar = tarfile.open(out / f"{shard:05d}.tar.tmp", "w", format=tarfile.USTAR_FORMAT)
        key = f"{written:09d}"
        meta = json.dumps({"key": key, "caption": caption, "source_index": index}).encode()
        for name, payload in ((f"{key}.{ext}", data), (f"{key}.txt", caption.encode()),
                              (f"{key}.json", meta)):
            tar.addfile(*_member(name, payload))
        sizes[f"{shard:05d}.tar"] = sizes.get(f"{shard:05d}.tar", 0) + 1
        written += 1
    shard = _close(tar, out, shard, sizes)
    if written == 0:
        raise DataError("data pack: no sample to write (every image missing or unreadable)")
    atomic_write_json(out / "sizes.json", sizes)
    last = f"{shard - 1:05d}"
    pattern = str(out / (f"{{00000..{last}}}.tar" if shard > 1 else "00000.tar"))
    return Packed(pattern, shard, written, skipped)


def _close(tar, out: Path, shard: int, sizes: dict) -> int:
    """Finish the open shard (rename into place, write its stats); the next shard's number."""
    if tar is not None:
        tar.close()
        name = f"{shard:05d}"
        os.replace(out / f"{name}.tar.tmp", out / f"{name}.tar")
        count = sizes[f"{name}.tar"]
        atomic_write_json(out / f"{name}_stats.json",
                          {"count": count, "successes": count, "failed_to_download": 0})
    return shard + 1
