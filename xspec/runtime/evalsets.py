"""Evaluation sets beside the primary one, scored whenever the primary set is.

Each zero-shot set is an `Evaluator` of its own (one classifier build per model and one decode
per image per call, as the primary set's), over its class subset when it has one: the
classifier holds the subset's classes only, which is the full classifier's logits restricted
to them, and images of other classes are left out. The attack's target is looked up in each
set's (subset's) classes; a set without it gets no ASR. Retrieval sets are scored by
`xspec.runtime.retrieval`, linear probes by `xspec.runtime.probe`.

Results ride along with the primary set's scores (`Scores.rows`), so every caller that logs
scores logs them: split "eval:<set>" for zero-shot sets, "retrieval:<set>" for retrieval,
"probe:<set>" (metric top1) for a set's linear probe.
"""

from __future__ import annotations

from collections.abc import Sequence

from xspec.spec.tables.settings import RunSettings


Row = tuple[str, str, float, int]  # (split, metric, value, n)


class Scores(dict):
    """{metric: (value, n)} of the primary set, as before; `rows` holds the other sets'."""

    def __init__(self, primary: dict, rows: Sequence[Row] = ()):
        super().__init__(primary)
        self.rows = list(rows)


class OtherSets:
    """The node's other evaluation sets: built once, scored at every evaluation."""

    def __init__(self, evaluator_class, cfg: dict, attack, tokenizer, normalize, size: int,
                 device, settings: RunSettings):
        self.zero_shot = {
            name: evaluator_class({**set_cfg, "metrics": cfg["metrics"]}, attack, tokenizer,
                                  normalize, size, device, settings)
            for name, set_cfg in cfg.get("sets", {}).items()}
        self.probes = {}
        for name, set_cfg in cfg.get("sets", {}).items():
            if set_cfg.get("probe"):
                from xspec.runtime.probe import LinearProbe

                self.probes[name] = LinearProbe(
                    set_cfg["probe"], self.zero_shot[name].data, set_cfg, normalize, size,
                    device, settings, getattr(attack, "seed", 0))
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
        for name, probe in self.probes.items():
            for model, model_rows in zip(models, rows):
                model_rows.append((f"probe:{name}", "top1", *probe(model)))
        for name, evaluator in self.retrieval.items():
            for model_rows, scores in zip(rows, evaluator.many(models)):
                model_rows += [(f"retrieval:{name}", metric, value, n)
                               for metric, (value, n) in scores.items()]
        return [Scores(p, r) for p, r in zip(primary, rows)]

