"""Training and evaluation batches: decode, poison on the fly, augment, normalise, tokenise.

Every random choice (data order, augmentation) derives from (node seed, purpose, epoch, index),
so an epoch's batches are the same after a resume as they were the first time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from xspec.runtime.data import EvalSet, PairSet, iterate
from xspec.runtime.distributed import Dist
from xspec.runtime.seeding import derive_seed, generator

EVAL_KEY_OFFSET = 1 << 40  # evaluation triggers come from their own stream of keys
TOKEN_CACHE_LIMIT = 500_000  # pairs; beyond, captions are tokenised batch by batch


@contextmanager
def intra_op_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Normalizer:
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, mean, std) -> "Normalizer":
        return cls(torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1))

    def __call__(self, images01: torch.Tensor) -> torch.Tensor:
        return (images01 - self.mean) / self.std


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float().div_(255)


def to_uint8(images01: torch.Tensor) -> torch.Tensor:
    return images01.mul(255).round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class TrainingData:
    pairs: PairSet
    indices: np.ndarray  # which pairs this node trains on
    captions: list[str]  # captions of all pairs, poisoned ones already replaced
    poisoned: np.ndarray  # bool mask over all pairs
    attack: object
    tokenizer: object
    normalize: Normalizer
    batch_size: int
    seed: int
    views: set[str]
    augmenter: object | None = None
    workers: int = 0
    skipped: set[int] = field(default_factory=set)  # unreadable images, by pair index
    _token_rows: np.ndarray | None = field(default=None, repr=False)
    _token_cache: torch.Tensor | None = field(default=None, repr=False)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.indices) // self.batch_size)

    def _order(self, epoch: int) -> list[list[int]]:
        perm = torch.randperm(len(self.indices), generator=generator(self.seed, "order", epoch))
        chosen = self.indices[perm.numpy()]
        size = min(self.batch_size, len(chosen))
        return [chosen[i * size:(i + 1) * size].tolist() for i in range(self.steps_per_epoch)]

    def batches(self, epoch: int, dist: Dist = Dist()) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's share of each global batch of the epoch."""
        order = [dist.shard(batch) for batch in self._order(epoch)]
        for kept, images in iterate(self.pairs.images, order, self.workers, self.skipped):
            if len(kept) < 2:
                continue
            yield self._assemble(epoch, kept, images)

    def _tokens(self, kept: list[int]) -> torch.Tensor:
        """Tokens of the pairs' captions, tokenised once per node when the set is not huge."""
        if len(self.indices) > TOKEN_CACHE_LIMIT:
            return self.tokenizer([self.captions[i] for i in kept])
        if self._token_rows is None:
            self._token_rows = np.full(len(self.captions), -1, dtype=np.int64)
            self._token_rows[self.indices] = np.arange(len(self.indices))
            self._token_cache = self.tokenizer([self.captions[i] for i in self.indices.tolist()])
        return self._token_cache[torch.from_numpy(self._token_rows[kept])]

    def _assemble(self, epoch: int, kept: list[int], images: torch.Tensor) -> dict:
        # Many small tensor ops: with a second thread each waits for a core another process
        # may hold (measured 3x slower under load); one thread is faster here.
        with intra_op_threads(1):
            return self._assemble_batch(epoch, kept, images)

    def _assemble_batch(self, epoch: int, kept: list[int], images: torch.Tensor) -> dict:
        keys = torch.as_tensor(kept, dtype=torch.long)
        images01 = to_unit(images)
        hit = torch.from_numpy(self.poisoned[kept])
        if hit.any():
            images01[hit] = self.attack.apply(images01[hit], keys[hit])
        captions = [self.captions[i] for i in kept]
        out = {"image": self.normalize(images01), "text": self._tokens(kept), "index": keys}
        if "image_aug" in self.views or "text_aug" in self.views:
            seeds = torch.tensor([derive_seed(self.seed, "augment", epoch, i) % (1 << 62)
                                  for i in kept])
            aug_images, aug_captions = self.augmenter(to_uint8(images01), captions, seeds)
            out["image_aug"] = self.normalize(to_unit(aug_images))
            out["text_aug"] = self.tokenizer(aug_captions)
        return out


def eval_batches(data: EvalSet, attack, normalize: Normalizer, batch_size: int,
                 with_trigger: bool, workers: int = 0, skipped: set[int] | None = None) -> Iterator:
    """(clean, triggered or None, labels) per batch; the same triggers at every call."""
    order = list(range(len(data.labels)))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for kept, images in iterate(data.images, chunks, workers, skipped):
        if not kept:
            continue
        images01 = to_unit(images)
        triggered = None
        if with_trigger:
            keys = torch.as_tensor(kept, dtype=torch.long) + EVAL_KEY_OFFSET
            triggered = normalize(attack.apply(images01, keys))
        yield normalize(images01), triggered, torch.from_numpy(data.labels[kept])
