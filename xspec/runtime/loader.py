"""Running a recipe over a list of jobs, in DataLoader worker processes or in this one.

A recipe is a picklable callable job -> batch of CPU tensors (uint8 images, tokens, indices): it
does the per-sample work (decoding, trigger, augmentation, tokenising) from per-sample seeds, so
what it returns for a job is the same in every process. A `Loader` keeps its worker processes
across epochs and hands back (job, batch) in job order, with the batch in pinned memory when it
is going to a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

PREFETCH_PER_WORKER = 2  # whole batches each worker keeps ready; 2 per worker keeps one building


@contextmanager
def intra_op_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Jobs(torch.utils.data.Sampler):
    """The jobs of the current pass; the DataLoader reads them anew at every `iter`."""

    def __init__(self):
        self.jobs: Sequence = ()

    def __iter__(self):
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


class _RecipeSet(torch.utils.data.Dataset):
    def __init__(self, recipe: Callable):
        self.recipe = recipe

    def __getitem__(self, job):
        return self.recipe(job)


class Loader:
    """`run(jobs)` yields (job, recipe(job)) in order; workers = 0 runs the recipe here.

    Many small tensor ops: in this process the recipe runs on one intra-op thread, as each
    DataLoader worker does (a second thread waits for a core another process may hold)."""

    def __init__(self, recipe: Callable, workers: int = 0, pin_memory: bool = False,
                 persistent: bool = True):
        self.recipe, self.workers = recipe, workers
        self._jobs = _Jobs()
        self._loader = None
        if workers > 0:
            self._loader = torch.utils.data.DataLoader(
                _RecipeSet(recipe), batch_size=None, sampler=self._jobs, num_workers=workers,
                persistent_workers=persistent, pin_memory=pin_memory,
                prefetch_factor=PREFETCH_PER_WORKER)

    def run(self, jobs: Sequence) -> Iterator[tuple[object, object]]:
        jobs = list(jobs)
        if self._loader is None:
            for job in jobs:
                with intra_op_threads(1):
                    out = self.recipe(job)
                yield job, out
            return
        if not jobs:
            return
        self._jobs.jobs = jobs
        yield from zip(jobs, self._loader)
