"""Fashion-MNIST from Debian's `dataset-fashion-mnist` idx files, held in memory, captioned
with web-style sentences that differ from the 80 CLIP templates (so zero-shot evaluation is not
a lookup of training captions)."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np
import torch

from xspec.errors import DataError
from xspec.runtime.columns import Strings
from xspec.runtime.data import EvalSet, InMemoryImages, PairSet, resize_uint8
from xspec.runtime.seeding import derive_seed
from xspec.spec.classes import read_classes

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


@cache
def read_idx(path: Path) -> np.ndarray:
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


def _images(cfg: dict, size: int) -> tuple[InMemoryImages, np.ndarray]:
    prefix = "train" if cfg["split"] == "train" else "t10k"
    root = Path(cfg["path"])
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    n = min(cfg.get("size") or len(labels), len(labels))
    pixels = resize_uint8(torch.from_numpy(images[:n].copy()).unsqueeze(1), size)
    return InMemoryImages(pixels), labels[:n]


def _labels(cfg: dict) -> np.ndarray:
    prefix = "train" if cfg["split"] == "train" else "t10k"
    labels = read_idx(Path(cfg["path"]) / f"{prefix}-labels-idx1-ubyte.gz")
    return labels[: cfg.get("size") or len(labels)]


def pair_captions(cfg: dict) -> Strings:
    return Strings.of([fashion_caption(int(y), i) for i, y in enumerate(_labels(cfg))])


def open_pairs(cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet:
    images, labels = _images(cfg, size)
    return PairSet(images, Strings.of([fashion_caption(int(y), i) for i, y in enumerate(labels)]))


def open_eval(cfg: dict, size: int, on_bad_image: str = "skip") -> EvalSet:
    images, labels = _images(cfg, size)
    return EvalSet(images, labels, read_classes("fashion_mnist"))
