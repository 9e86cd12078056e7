"""Prototypes of runtime speed fixes, measured by the bench scripts before the runtime takes them.

`FastTrainingData` is `xspec.runtime.pipeline.TrainingData` with two changes to `_assemble`:
1. the whole batch assembly (uint8 -> float, trigger, normalise, AutoAugment, EDA) runs with one
   intra-op thread. Its tensors are small (a 128x3x32x32 batch is 0.4 M floats), so OpenMP
   parallelism buys nothing, and on a busy 2-core machine every parallel region waits for a
   second core: `to_unit` and `Normalizer` took 18-36 ms each per batch instead of < 1 ms, and
   per-image AutoAugment 1.4 s per batch instead of 30 ms;
2. captions are tokenised once, for all pairs, on first use; a batch indexes the cached tokens
   (augmented captions still go through the tokenizer, since they change every epoch).
Outputs are identical (checked by `check_identical`). In the runtime, the change is a
`with intra_op_threads(1):` around the body of `TrainingData._assemble` (and of the loop body of
`eval_batches`), and a token tensor built once in `TrainingData` and indexed by pair.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from xspec.runtime.pipeline import TrainingData


@contextmanager
def intra_op_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CachedTokenizer:
    """Tokenises every known caption once; unknown ones (augmented captions) as before."""

    def __init__(self, tokenizer, captions: list[str]):
        self.tokenizer = tokenizer
        self.rows = {caption: i for i, caption in enumerate(dict.fromkeys(captions))}
        self.tokens = tokenizer(list(self.rows))

    def __call__(self, texts: list[str]) -> torch.Tensor:
        rows = [self.rows.get(text) for text in texts]
        if None in rows:
            return self.tokenizer(texts)
        return self.tokens[torch.tensor(rows)]


class FastTrainingData(TrainingData):
    """The runtime's batches, assembled with one intra-op thread and cached caption tokens."""

    def _assemble(self, epoch: int, kept: list[int], images: torch.Tensor) -> dict:
        with intra_op_threads(1):
            if not isinstance(self.tokenizer, CachedTokenizer):
                self.tokenizer = CachedTokenizer(self.tokenizer, self.captions)
            return super()._assemble(epoch, kept, images)


def fast(data: TrainingData) -> FastTrainingData:
    return FastTrainingData(**{k: getattr(data, k) for k in TrainingData.__dataclass_fields__})


def check_identical(data: TrainingData, epoch: int = 1, batches: int = 2) -> None:
    """The prototype yields exactly the batches the runtime yields."""
    for a, b, _ in zip(data.batches(epoch), fast(data).batches(epoch), range(batches)):
        for key in a:
            if not torch.equal(a[key], b[key]):
                raise AssertionError(f"prototype differs from the runtime in {key!r}")
