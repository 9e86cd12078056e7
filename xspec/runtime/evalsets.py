"""Evaluation sets beside the primary one, scored whenever the primary set is.

Each zero-shot set is an `Evaluator` of its own (one classifier build per model and one decode
per image per call, as the primary set's), over its class subset when it has one: the
classifier holds the subset's classes only, which is the full classifier's logits restricted
to them, and images of other classes are left out. The attack's target is looked up in each
set's (subset's) classes; a set without it gets no ASR. Retrieval sets are scored by
`xspec.runtime.retrieval`.

Results ride along with the primary set's scores (`Scores.rows`), so every caller that logs
scores logs them: split "eval:<set>" for zero-shot sets, "retrieval:<set>" for retrieval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from xspec.runtime.data import EvalSet

Row = tuple[str, str, float, int]  # (split, metric, value, n)


class Scores(dict):
    """{metric: (value, n)} of the primary set, as before; `rows` holds the other sets'."""

    def __init__(self, primary: dict, rows: Sequence[Row] = ()):
        super().__init__(primary)
        self.rows = list(rows)


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


class OtherSets:
    """The node's other evaluation sets: built once, scored at every evaluation."""

    def __init__(self, evaluator_class, cfg: dict, attack, tokenizer, normalize, size: int,
                 device, settings: dict):
        self.zero_shot = {
            name: evaluator_class({**set_cfg, "metrics": cfg["metrics"]}, attack, tokenizer,
                                  normalize, size, device, settings)
            for name, set_cfg in cfg.get("sets", {}).items()}
        self.retrieval = {}
        if cfg.get("retrieval"):
            from xspec.runtime.retrieval import RetrievalEvaluator

            self.retrieval = {
                name: RetrievalEvaluator(set_cfg, attack, tokenizer, normalize, size, device,
                                         settings)
                for name, set_cfg in cfg["retrieval"].items()}

    def __bool__(self) -> bool:
        return bool(self.zero_shot or self.retrieval)

    def score(self, models: list, primary: list[dict], dist) -> list[Scores]:
        """The primary scores of each model with every other set's rows attached."""
        rows: list[list[Row]] = [[] for _ in models]
        for name, evaluator in self.zero_shot.items():
            for model_rows, scores in zip(rows, evaluator.many(models, dist)):
                model_rows += [(f"eval:{name}", metric, value, n)
                               for metric, (value, n) in scores.items()]
        for name, evaluator in self.retrieval.items():
            for model_rows, scores in zip(rows, evaluator.many(models)):
                model_rows += [(f"retrieval:{name}", metric, value, n)
                               for metric, (value, n) in scores.items()]
        return [Scores(p, r) for p, r in zip(primary, rows)]

