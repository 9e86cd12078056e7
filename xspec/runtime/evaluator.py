"""Scoring a model during training: the registered metrics `evaluate.metrics` names (top-1,
top-5, ASR, a plugin's) on the evaluation set (`Evaluator`), and the MMCL loss on held-out clean pairs (`HeldOutLoss`); both score several
models (a packed job's members) from one pass over their images."""

from __future__ import annotations

import torch

from xspec.runtime.data import open_eval
from xspec.runtime.evalsets import OtherSets
from xspec.runtime.subsets import restrict
from xspec.runtime.distributed import Dist
from xspec.runtime.evaluate import (
    clip80_templates, evaluate_many, triggered_metrics, zero_shot_classifier,
)
from xspec.runtime.objectives import mmcl
from xspec.runtime.pipeline import Normalizer, TrainingData, eval_batches, eval_loader
from xspec.runtime.train import encode
from xspec.spec.tables.settings import RunSettings


class Evaluator:
    """The metrics `evaluate.metrics` names (`xspec.extend.METRICS`) on the evaluation set, in
    one pass per call."""

    def __init__(self, cfg: dict, attack, tokenizer, normalize: Normalizer, size: int,
                 device: torch.device, settings: RunSettings):
        self.data = restrict(open_eval(cfg["source"], size, settings.on_bad_image),
                             cfg.get("subset"))
        self.templates = _templates(cfg.get("templates", "clip80"))
        self.metrics, self.attack, self.tokenizer = cfg["metrics"], attack, tokenizer
        self.normalize, self.device, self.settings = normalize, device, settings
        self.skipped: set[int] = set()
        self.bad_images = 0  # unreadable evaluation images, over all ranks
        self.loader = None
        self.manifest = None  # () -> the poison manifest, for metrics that need it
        target = getattr(attack, "target", None)
        self.target_index = (self.data.classes.index(target)  # a set may lack it: no ASR
                             if target in self.data.classes and triggered_metrics(self.metrics)
                             else None)
        self.others = OtherSets(type(self), cfg, attack, tokenizer, normalize, size, device,
                                settings)

    def __call__(self, model, dist: Dist = Dist()) -> dict[str, tuple[float, int]]:
        """With several ranks, each scores its share of the batches and the counts are summed:
        every rank returns what one process scoring the whole set would."""
        return self.many([model], dist)[0]

    def many(self, models: list, dist: Dist = Dist()) -> list[dict[str, tuple[float, int]]]:
        """Scores of several models from one pass over the evaluation images."""
        classifiers = [zero_shot_classifier(model, self.tokenizer, list(self.data.classes),
                                            self.templates, self.device) for model in models]
        with_trigger = self.target_index is not None
        if self.loader is None:
            self.loader = eval_loader(self.data, self.attack, with_trigger,
                                      self.settings.workers, self.device,
                                      self.normalize)
        batches = eval_batches(self.data, self.attack, self.normalize,
                               self.settings.eval_batch_size, with_trigger,
                               skipped=self.skipped, loader=self.loader, dist=dist,
                               device=self.device)
        context = {"classes": list(self.data.classes), "manifest": self.manifest}
        scores = evaluate_many(models, classifiers, batches, self.target_index, dist,
                               self.metrics, context)
        self.bad_images = len(self.skipped)  # this rank's share; summed over the ranks below
        if dist.world > 1:
            import torch.distributed as td

            total = torch.tensor([self.bad_images], dtype=torch.int64, device=self.device)
            td.all_reduce(total)
            self.bad_images = int(total.item())
        return self.others.score(models, scores, dist) if self.others else scores


def _templates(value: str | list[str]) -> list[str]:
    """The primary set names its templates ("clip80"); another set's config holds the lines of
    its template file (`xspec.compiler.evalsets`)."""
    return clip80_templates() if value == "clip80" else list(value)


class HeldOutLoss:
    """MMCL loss on clean pairs the run never trains on: the validation loss a defender can
    compute (no trigger, no ASR needed). Logged as split "heldout", metric "mmcl"."""

    def __init__(self, data: TrainingData, device: torch.device):
        self.data, self.device = data, device

    def __call__(self, model) -> tuple[float, int]:
        return self.many([model])[0]

    @torch.no_grad()
    def many(self, models: list) -> list[tuple[float, int]]:
        """(mean loss, pairs) of each model, from one pass over the held-out pairs."""
        modes = [model.training for model in models]
        for model in models:
            model.eval()
        totals, n = [0.0] * len(models), 0
        for batch in self.data.batches(epoch=0):
            for i, model in enumerate(models):
                features = encode(model, batch, self.device)
                totals[i] += float(mmcl(features, model.logit_scale.exp())) * len(batch["image"])
            n += len(batch["image"])
        for model, mode in zip(models, modes):
            model.train(mode)
        return [(total / max(1, n), n) for total in totals]
