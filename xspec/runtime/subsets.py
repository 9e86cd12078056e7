"""Class subsets of an evaluation set (`[evaluate.sets.<name>] subset`): its images of those
classes, relabelled by their position in the subset."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from xspec.runtime.data import EvalSet


def restrict(data: EvalSet, subset: Sequence[int] | None) -> EvalSet:
    """The set's images of the `subset` classes (indices into its class list), labelled by
    their position in the subset; the classes become the subset's."""
    if subset is None:
        return data
    position = np.full(len(data.classes), -1, dtype=np.int64)
    position[list(subset)] = np.arange(len(subset))
    keep = np.flatnonzero(position[data.labels] >= 0)
    return EvalSet(_pick(data.images, keep), position[data.labels[keep]],
                   tuple(data.classes[i] for i in subset))


def _pick(images, keep: np.ndarray):
    """The images at `keep`, as a source of the same kind (files: their paths; in memory:
    their pixels)."""
    if hasattr(images, "paths"):
        return dataclasses.replace(images, paths=[images.paths[i] for i in keep])
    if hasattr(images, "pixels"):
        return dataclasses.replace(images, pixels=images.pixels[keep])
    raise TypeError(f"cannot take a class subset of {type(images).__name__} images")
