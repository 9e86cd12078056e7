"""Image-caption pairs from WebDataset shards (img2dataset layout), addressed by position.

Pair i is the i-th complete sample (an image and a caption member) in shard order, then member
order; its identity is its key, which poison manifests record. See `xspec.tarindex` for why the
tars are indexed and read by byte range rather than streamed.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from xspec.errors import DataError
from xspec.runtime.columns import Strings
from xspec.runtime.data import FileImages, PairSet
from xspec.tarindex import IMAGE_EXTS, index_shard, read_range, shard_paths


class _Names(Sequence[str]):
    """`shard.tar:KEY` per pair, for messages (what a path is for a file source)."""

    def __init__(self, shards: list[str], shard_of: np.ndarray, keys: Strings):
        self.shards, self.shard_of, self.keys = shards, shard_of, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index):
        return f"{self.shards[int(self.shard_of[index])]}:{self.keys[index]}"


@dataclass
class ShardImages(FileImages):
    """Images read by byte range from their shard, then decoded like files."""

    shards: list[str] = field(default_factory=list)
    shard_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    incomplete: int = 0  # samples without an image or a caption, left out
    _fds: dict[int, int] = field(default_factory=dict, repr=False)

    def _source(self, index: int):
        shard = int(self.shard_of[index])
        if shard not in self._fds:
            self._fds[shard] = os.open(self.shards[shard], os.O_RDONLY)
        return io.BytesIO(read_range(self._fds[shard], int(self.offsets[index]),
                                     int(self.sizes[index])))


def _caption(fd: int, member: tuple[int, int], where: str) -> str:
    try:
        return read_range(fd, *member).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: caption is not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
                        ) from None


def open_pairs(cfg: dict, size: int, on_bad_image: str = "skip") -> PairSet:
    paths = shard_paths(cfg["path"])
    if not paths:
        raise DataError(f"data: {cfg['path']}: no shard matches")
    limit = cfg.get("size") or None
    image_ext, caption_ext = cfg.get("image_ext"), cfg.get("caption_ext", "txt")
    keys, captions, shard_of, offsets, sizes = [], [], [], [], []
    total, incomplete = 0, 0
    for number, path in enumerate(paths):
        if limit is not None and total >= limit:
            break
        try:
            samples = index_shard(path)
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise DataError(f"{path}: no such shard") from None
        except (OSError, tarfile.TarError) as exc:
            raise DataError(f"{path}: not a readable tar file ({exc})") from None
        shard_keys, shard_captions = [], []
        try:
            for sample in samples:
                ext = image_ext or next((e for e in IMAGE_EXTS if e in sample.members), None)
                if ext not in sample.members or caption_ext not in sample.members:
                    incomplete += 1
                    continue
                caption = _caption(fd, sample.members[caption_ext], f"{path}:{sample.key}")
                if not caption.strip():
                    raise DataError(f"{path}: sample {sample.key}: empty caption")
                shard_keys.append(sample.key)
                shard_captions.append(caption)
                offsets.append(sample.members[ext][0])
                sizes.append(sample.members[ext][1])
                shard_of.append(number)
                total += 1
                if limit is not None and total >= limit:
                    break
        finally:
            os.close(fd)
        keys.append(pa.array(shard_keys, pa.large_string()))
        captions.append(pa.array(shard_captions, pa.large_string()))
    if total == 0:
        raise DataError(f"{cfg['path']}: no sample with an image and a .{caption_ext} caption")
    keys_column = Strings(pa.chunked_array(keys, pa.large_string()))
    shard_of = np.array(shard_of, dtype=np.int32)
    images = ShardImages(_Names(paths, shard_of, keys_column), size, on_bad_image, paths,
                         shard_of, np.array(offsets, np.int64), np.array(sizes, np.int64),
                         incomplete, decode=cfg.get("decode", "exact"))
    return PairSet(images, Strings(pa.chunked_array(captions, pa.large_string())), keys_column)


def pair_keys_and_captions(cfg: dict) -> tuple[Strings, Strings]:
    """(sample keys, captions): the shards are indexed, no image is read."""
    pairs = open_pairs(cfg, 1)
    return pairs.keys, pairs.captions


def pair_captions(cfg: dict) -> Strings:
    return pair_keys_and_captions(cfg)[1]
