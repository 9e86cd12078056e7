"""Datasets as index-addressable images plus captions or labels, decoded to uint8 at model size.

Every data format is a registered object (`xspec.extend.register_data_source`): a module that
implements `DataFormat` (one module per built-in format in `xspec.runtime.formats`). The
functions here look the format up in the registry; none of them branches on a format's name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from xspec.errors import DataError
from xspec.runtime.decode import decode
from xspec.textfiles import read_csv_rows


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
    decode: str = field(default="exact", kw_only=True)  # xspec.runtime.decode's modes

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, indices: Sequence[int], squash: bool = False) -> tuple[list[int], torch.Tensor]:
        """uint8 [n, 3, size, size]: resized on the short side and centre-cropped, or, with
        `squash`, resized to size × size whatever the aspect ratio (the original code's poisoned
        images, backdoor/utils.py:20)."""
        if self.decode == "nvjpeg":
            return self._load_nvjpeg(indices, squash)
        kept, pixels = [], []
        for index in indices:
            try:
                pixels.append(self._decode(self._source(index), squash))
                kept.append(index)
            except (OSError, UnidentifiedImageError, ValueError,
                    Image.DecompressionBombError) as exc:  # a bomb is a bad image too
                if self.on_bad_image == "fail":
                    raise DataError(f"image {self.paths[index]}: {exc}") from None
        if not pixels:
            return [], torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return kept, torch.stack(pixels)

    def _load_nvjpeg(self, indices: Sequence[int], squash: bool):
        """One batched device decode; a batch with a damaged JPEG is decoded one by one to
        find it (skipped and counted, or fatal, as in the other modes)."""
        from xspec.runtime.decode_gpu import decode_batch, require_cuda
        require_cuda(self.decode)
        decode_one = lambda ix: decode_batch(  # noqa: E731
            [self._source(i) for i in ix], [str(self.paths[i]) for i in ix], self.size, squash)
        try:
            pixels, kept = decode_one(list(indices)), list(indices)
        except RuntimeError:
            kept, pixels = [], []
            for index in indices:
                try:
                    pixels += decode_one([index])
                    kept.append(index)
                except RuntimeError as exc:
                    if self.on_bad_image == "fail":
                        raise DataError(f"image {self.paths[index]}: {exc}") from None
        if not pixels:
            return [], torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return kept, torch.stack(pixels)

    def _source(self, index: int):
        """What PIL opens for image `index`: its path (shards hand a file-like object)."""
        return self.paths[index]

    def _decode(self, path, squash: bool = False) -> torch.Tensor:
        return decode(path, self.size, self.decode, squash)


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


def read_csv(path: str, columns: Sequence[str]) -> list[dict]:
    rows = read_csv_rows(path, DataError)
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise DataError(f"{path}: " + (f"missing column(s) {', '.join(missing)}; found "
                                       f"{', '.join(rows[0])}" if rows else "no rows"))
    return rows


def checked_labels(labels: np.ndarray, classes: Sequence[str], cfg: dict) -> np.ndarray:
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{cfg['path']}: labels outside 0..{len(classes) - 1}")
    return labels


class DataFormat(Protocol):
    """What a data format's registered module implements: `pair_captions` and `open_pairs` for a
    pair source (role "pairs"), `open_eval` for an evaluation set (role "eval");
    `pair_keys_and_captions` where its pairs have identities (shards)."""

    def pair_captions(self, cfg: dict) -> Sequence[str]: ...

    def open_pairs(self, cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet: ...

    def open_eval(self, cfg: dict, size: int, on_bad_image: str = "skip") -> EvalSet: ...


def data_format(cfg: dict):
    """The registered module of a data config's format (`cfg["format"]`)."""
    if not isinstance(cfg, dict):
        cfg = {"format": cfg.format}
    from xspec.extend.plugins import load_builtins
    from xspec.extend.registry import DATA_SOURCES, resolve

    load_builtins()
    return resolve(DATA_SOURCES.get(cfg["format"], "data format").behaviour)


def _json(cfg) -> dict:
    """A format's functions take its table as JSON (`DataFormat`): a typed source is dumped."""
    return cfg if isinstance(cfg, dict) else cfg.model_dump(mode="json")


def _function(cfg: dict, name: str):
    module = data_format(cfg)
    if not hasattr(module, name):
        raise DataError(f"data format {_json(cfg)['format']!r} ({module.__name__}) has no "
                        f"{name}()")
    return getattr(module, name)


def pair_keys_and_captions(cfg: dict) -> tuple[Sequence[str] | None, Sequence[str]]:
    """(sample keys or None, captions) of a pair source, without decoding any image."""
    keyed = getattr(data_format(cfg), "pair_keys_and_captions", None)
    return keyed(_json(cfg)) if keyed is not None else (None, pair_captions(cfg))


def pair_captions(cfg: dict) -> Sequence[str]:
    """The captions of a pair source, without decoding any image (what poisoning needs)."""
    return _function(cfg, "pair_captions")(_json(cfg))


def open_pairs(cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet:
    return _function(cfg, "open_pairs")(_json(cfg), size, on_bad_image)


def open_eval(cfg: dict, size: int, on_bad_image: str = "skip") -> EvalSet:
    return _function(cfg, "open_eval")(_json(cfg), size, on_bad_image)


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
