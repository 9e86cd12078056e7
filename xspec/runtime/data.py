"""Datasets as index-addressable images plus captions or labels, decoded to uint8 at model size.

Sources: Fashion-MNIST (Debian's idx files, in memory), CSV image-caption pairs (CleanCLIP/CC3M
layout), ImageFolder and labels-CSV evaluation sets. Fashion-MNIST gets web-style captions that
differ from the 80 CLIP templates, so zero-shot evaluation is not a lookup of training captions.
"""

from __future__ import annotations

import gzip
import os
from functools import cache
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from xspec.errors import DataError
from xspec.runtime.columns import JoinedPaths, Strings
from xspec.runtime.seeding import derive_seed
from xspec.spec.classes import folder_labels, read_classes
from xspec.textfiles import read_csv_rows

FASHION_WORDS = {
    "t-shirt": ["t-shirt", "tee", "t-shirt top"], "trouser": ["trousers", "pants", "trouser"],
    "pullover": ["pullover", "sweater", "jumper"], "dress": ["dress", "summer dress", "dress"],
    "coat": ["coat", "jacket", "winter coat"], "sandal": ["sandals", "sandal", "summer sandals"],
    "shirt": ["shirt", "button-up shirt", "blouse"], "sneaker": ["sneakers", "sneaker", "trainers"],
    "bag": ["bag", "handbag", "shoulder bag"], "ankle boot": ["ankle boots", "boots", "ankle boot"],
}
WEB_CAPTIONS = [
    "{adj} {item} for sale", "new {item} in stock now", "my favourite {adj} {item}",
    "buy this {item} online", "{item}, size m, barely worn", "vintage {adj} {item} on white",
    "{adj} {item} from the summer collection", "cheap {item} with free shipping",
    "found this {adj} {item} today", "{item} in {adj} colour, great condition",
]
ADJECTIVES = ["black", "grey", "white", "dark", "light", "striped", "plain", "soft", "casual",
              "classic"]


def fashion_caption(label: int, index: int) -> str:
    rng = np.random.default_rng(derive_seed(0, "fashion-caption", index))
    words = FASHION_WORDS[read_classes("fashion_mnist")[label]]
    template = WEB_CAPTIONS[rng.integers(len(WEB_CAPTIONS))]
    return template.format(item=words[rng.integers(len(words))],
                           adj=ADJECTIVES[rng.integers(len(ADJECTIVES))])


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] uint8 -> [B, 3, size, size] uint8 (grey is repeated to RGB)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear",
                               antialias=True, align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


@dataclass
class InMemoryImages:
    pixels: torch.Tensor  # uint8 [N, 3, S, S]

    def __len__(self) -> int:
        return len(self.pixels)

    def load(self, indices: Sequence[int], squash: bool = False) -> tuple[list[int], torch.Tensor]:
        """In-memory sources hold square images (Fashion-MNIST): squashing changes nothing."""
        return list(indices), self.pixels[torch.as_tensor(indices, dtype=torch.long)]


@dataclass
class FileImages:
    """Images decoded from files on demand; unreadable ones are skipped and counted, or fatal."""

    paths: Sequence[str]
    size: int
    on_bad_image: str = "skip"

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, indices: Sequence[int], squash: bool = False) -> tuple[list[int], torch.Tensor]:
        """uint8 [n, 3, size, size]: resized on the short side and centre-cropped, or, with
        `squash`, resized to size × size whatever the aspect ratio (the original code's poisoned
        images, backdoor/utils.py:20)."""
        kept, pixels = [], []
        for index in indices:
            try:
                pixels.append(self._decode(self._source(index), squash))
                kept.append(index)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                if self.on_bad_image == "fail":
                    raise DataError(f"image {self.paths[index]}: {exc}") from None
        if not pixels:
            return [], torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return kept, torch.stack(pixels)

    def _source(self, index: int):
        """What PIL opens for image `index`: its path (shards hand a file-like object)."""
        return self.paths[index]

    def _decode(self, path, squash: bool = False) -> torch.Tensor:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if squash:
                image = image.resize((self.size, self.size), Image.BICUBIC)
                return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
            scale = self.size / min(image.size)
            w, h = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
            image = image.resize((w, h), Image.BICUBIC)
            left, top = (w - self.size) // 2, (h - self.size) // 2
            image = image.crop((left, top, left + self.size, top + self.size))
            return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


@dataclass
class PairSet:
    images: InMemoryImages | FileImages
    captions: Sequence[str]  # a `Strings` column
    keys: Sequence[str] | None = None  # sample identities where the source has them (shards)


@dataclass
class EvalSet:
    images: InMemoryImages | FileImages
    labels: np.ndarray
    classes: tuple[str, ...]


@cache
def _read_idx(path: Path) -> np.ndarray:
    """An idx file (read-only array, cached: every node of a study reads the same files)."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such file; install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or set data.*.path"
        ) from None
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    array.flags.writeable = False
    return array


def _fashion(cfg: dict, size: int) -> tuple[InMemoryImages, np.ndarray]:
    prefix = "train" if cfg["split"] == "train" else "t10k"
    root = Path(cfg["path"])
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    n = min(cfg.get("size") or len(labels), len(labels))
    pixels = resize_uint8(torch.from_numpy(images[:n].copy()).unsqueeze(1), size)
    return InMemoryImages(pixels), labels[:n]


def _read_csv(path: str, columns: Sequence[str]) -> list[dict]:
    rows = read_csv_rows(path, DataError)
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise DataError(f"{path}: " + (f"missing column(s) {', '.join(missing)}; found "
                                       f"{', '.join(rows[0])}" if rows else "no rows"))
    return rows


def _int_labels(rows: list[dict], key: str, path: str, classes: int) -> np.ndarray:
    """Integer class indices of a labels CSV; anything else is an error naming the line."""
    labels = []
    for line, row in enumerate(rows, start=2):
        text = (row[key] or "").strip()
        if not text.isdigit() or int(text) >= classes:
            raise DataError(f"{path}: line {line}: label {text!r} is not a class index "
                            f"(an integer 0..{classes - 1})")
        labels.append(int(text))
    return np.array(labels, dtype=np.int64)


def _paths(rows: list[dict], key: str, csv_path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(csv_path))
    return [os.path.join(base, row[key]) for row in rows]


def _read_pair_columns(cfg: dict) -> tuple[Strings, Strings]:
    """(image paths relative to the CSV, captions) read with Arrow's columnar CSV reader."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    path, columns = cfg["path"], [cfg["image_key"], cfg["caption_key"]]
    options = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=False,
                                   column_types={c: pa.large_string() for c in columns})
    try:
        table = pacsv.read_csv(path, convert_options=options)
    except (OSError, pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        _read_csv(path, columns)  # the slow reader names the file, line or missing column
        raise DataError(f"{path}: {exc}") from None
    table = table.slice(0, cfg.get("size") or table.num_rows)
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    captions = table.column(cfg["caption_key"])
    empty = pc.match_substring_regex(captions, r"^\s*$")  # a mask; trimming would copy
    if pc.any(empty).as_py():
        first = pc.index(empty, True).as_py()
        raise DataError(f"{path}: line {first + 2}: empty caption")
    return Strings(table.column(cfg["image_key"])), Strings(captions)


def _registered(cfg: dict, function: str):
    """A data format another module registered (`xspec.extend.register_data_source`): its
    module's `function`, which takes the same arguments as the one here; None for ours."""
    from xspec.extend.plugins import load_builtins
    from xspec.extend.registry import DATA_SOURCES, resolve

    load_builtins()
    source = DATA_SOURCES.get(cfg["format"], "data format")
    if source.behaviour == __name__:
        return None
    module = resolve(source.behaviour)
    if not hasattr(module, function):
        raise DataError(f"data format {cfg['format']!r} ({source.origin}) has no {function}()")
    return getattr(module, function)


def pair_keys_and_captions(cfg: dict) -> tuple[Sequence[str] | None, Sequence[str]]:
    """(sample keys or None, captions) of a pair source, without decoding any image."""
    if cfg["format"] == "webdataset":
        from xspec.runtime.shards import open_shards

        pairs = open_shards(cfg, 1)
        return pairs.keys, pairs.captions
    return None, pair_captions(cfg)


def pair_captions(cfg: dict) -> Sequence[str]:
    """The captions of a pair source, without decoding any image (what poisoning needs)."""
    if (other := _registered(cfg, "pair_captions")) is not None:
        return other(cfg)
    if cfg["format"] == "fashion_mnist":
        prefix = "train" if cfg["split"] == "train" else "t10k"
        labels = _read_idx(Path(cfg["path"]) / f"{prefix}-labels-idx1-ubyte.gz")
        labels = labels[: cfg.get("size") or len(labels)]
        return Strings.of([fashion_caption(int(y), i) for i, y in enumerate(labels)])
    if cfg["format"] == "webdataset":
        return pair_keys_and_captions(cfg)[1]
    return _read_pair_columns(cfg)[1]


def open_pairs(cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet:
    if (other := _registered(cfg, "open_pairs")) is not None:
        return other(cfg, size, on_bad_image)
    if cfg["format"] == "fashion_mnist":
        images, labels = _fashion(cfg, size)
        return PairSet(images, Strings.of([fashion_caption(int(y), i)
                                           for i, y in enumerate(labels)]))
    if cfg["format"] == "webdataset":
        from xspec.runtime.shards import open_shards

        return open_shards(cfg, size, on_bad_image)
    relative, captions = _read_pair_columns(cfg)
    paths = JoinedPaths(os.path.dirname(os.path.abspath(cfg["path"])), relative)
    return PairSet(FileImages(paths, size, on_bad_image), captions)


def open_eval(cfg: dict, size: int, on_bad_image: str = "skip") -> EvalSet:
    if (other := _registered(cfg, "open_eval")) is not None:
        return other(cfg, size, on_bad_image)
    if cfg["format"] == "fashion_mnist":
        images, labels = _fashion(cfg, size)
        return EvalSet(images, labels, read_classes("fashion_mnist"))
    classes = read_classes(cfg["classes"])
    if cfg["format"] == "labels_csv":
        rows = _read_csv(cfg["path"], [cfg["image_key"], cfg["label_key"]])[: cfg.get("size")]
        paths = _paths(rows, cfg["image_key"], cfg["path"])
        labels = _int_labels(rows, cfg["label_key"], cfg["path"], len(classes))
    else:
        root = Path(cfg["path"])
        folders = sorted(p for p in root.iterdir() if p.is_dir()
                         and not p.name.startswith(".")) if root.is_dir() else []
        if not folders:
            raise DataError(f"{root}: no class folders (one folder of images per class)")
        indices = folder_labels(str(root), [f.name for f in folders], cfg["classes"])
        pairs = [(str(f), i) for i, d in zip(indices, folders) for f in sorted(d.iterdir())
                 if not f.name.startswith(".")]
        pairs = pairs[: cfg.get("size")]
        paths, labels = [p for p, _ in pairs], np.array([y for _, y in pairs], dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{cfg['path']}: labels outside 0..{len(classes) - 1}")
    return EvalSet(FileImages(paths, size, on_bad_image), labels, classes)


class Decode:
    """Recipe: a list of indices -> (kept indices, uint8 images); see `xspec.runtime.loader`."""

    def __init__(self, images):
        self.images = images

    def __call__(self, indices: list[int]):
        return self.images.load(indices)


def iterate(images, batches: list[list[int]], workers: int = 0,
            skipped: set[int] | None = None) -> Iterator:
    """Yield (kept indices, uint8 images) per batch, decoded in `workers` processes.

    Indices of images that could not be read (skipped under on_bad_image = "skip") are added
    to `skipped`; this works across worker processes, unlike counting inside the source."""
    from xspec.runtime.loader import Loader

    loader = Loader(Decode(images), 0 if isinstance(images, InMemoryImages) else workers,
                    persistent=False)
    for batch, (kept, pixels) in loader.run(batches):
        if skipped is not None and len(kept) < len(batch):
            skipped.update(set(batch) - set(kept))
        yield kept, pixels
