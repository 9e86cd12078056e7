"""Zero-shot evaluation: classifier weights from templates, then the registered metrics
(`xspec.extend.METRICS`: top1, top5, asr, asr_top5, a plugin's) of each evaluation.

Clean and triggered copies of each evaluation batch go through the model in one forward pass, so
the images are decoded once and every metric comes from the same model state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor

from xspec.builtin.accuracy import attack_success, topk_correct  # noqa: F401 (re-exported)
from xspec.extend.plugins import load_builtins
from xspec.extend.registry import METRICS, Metric, resolve
from xspec.runtime.evalview import EvalView

load_builtins()
DEFAULT_METRICS = ("top1", "top5", "asr")

Template = str | Callable[[str], str]
Batch = tuple[Tensor, Tensor | None, Tensor]


def clip80_templates() -> list[str]:
    return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]


def fill_template(template: Template, classname: str) -> str:
    if callable(template):
        return template(classname)
    return template.format(classname, c=classname)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """no_grad rather than inference_mode: inference tensors (such as a classifier built here)
    cannot be used later in a graph that needs gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def zero_shot_classifier(
    model: Any,
    tokenizer: Callable[[list[str]], Tensor],
    classnames: list[str],
    templates: Sequence[Template],
    device: torch.device | str,
    batch_size: int = 256,
) -> Tensor:
    """[embed_dim, n_classes]: per class, the re-normalised mean of its normalised template
    embeddings. Texts are encoded in chunks of whole classes, about batch_size texts at a time."""
    if not classnames or not templates:
        raise ValueError("zero_shot_classifier needs at least one class name and one template")
    per_chunk = max(1, batch_size // len(templates))
    columns = []
    with eval_mode(model):
        for start in range(0, len(classnames), per_chunk):
            chunk = classnames[start : start + per_chunk]
            texts = [fill_template(t, name) for name in chunk for t in templates]
            embeddings = model.encode_text(tokenizer(texts).to(device), normalize=True)
            means = embeddings.reshape(len(chunk), len(templates), -1).mean(dim=1)
            columns.append(F.normalize(means, dim=-1).T)
    return torch.cat(columns, dim=1)


def triggered_metrics(names: Sequence[str]) -> list[str]:
    """The metrics among `names` that score triggered images (they need the attack's target)."""
    return [name for name in names if METRICS.get(name, "evaluate.metrics").triggered]


def evaluate(
    model: Any,
    classifier: Tensor,
    batches: Iterable[Batch],
    target_index: int | None,
    dist: Any = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    context: dict | None = None,
) -> dict[str, tuple[float, int]]:
    """{metric: (value, n)} of the registered `metrics` (`xspec.extend.METRICS`); a fraction over
    0 images is NaN. A metric that reads the triggered images is present only with a target and
    at least one triggered batch. With `dist` of several ranks, each passes its share of the
    batches and the results are combined over ranks."""
    return evaluate_many([model], [classifier], batches, target_index, dist, metrics,
                         context)[0]


def evaluate_many(
    models: Sequence[Any],
    classifiers: Sequence[Tensor],
    batches: Iterable[Batch],
    target_index: int | None,
    dist: Any = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    context: dict | None = None,
) -> list[dict[str, tuple[float, int]]]:
    """`evaluate` for several models on one pass over the batches: each batch is decoded and
    triggered once and scored by every model (a packed grid's members). `context` holds the
    view's fields that do not vary by batch ("classes", "manifest")."""
    chosen = [METRICS.get(name, "evaluate.metrics") for name in metrics]
    tallies = [Tally(chosen) for _ in models]
    saw_triggered = False
    with ExitStack() as stack:
        for model in models:
            stack.enter_context(eval_mode(model))
        for clean, triggered, labels in batches:
            saw_triggered |= triggered is not None and target_index is not None
            for model, classifier, tally in zip(models, classifiers, tallies):
                tally.add(_view(model, classifier, clean, triggered, labels, target_index,
                                context or {}, tally.needs))
    seen = saw_triggered
    if dist is not None and dist.world > 1:
        seen = _any_over_ranks(saw_triggered, classifiers[0].device)
    return [tally.result(seen, dist, classifier.device)
            for tally, classifier in zip(tallies, classifiers)]


class Tally:
    """One model's running metrics: per-batch counts, and the views `reduce="whole"` metrics
    read at the end (only the fields they need, on the CPU)."""

    def __init__(self, metrics: list[Metric]):
        self.metrics = metrics
        self.needs = {need for m in metrics for need in m.needs}
        self.counts = {m.name: [0.0, 0.0] for m in metrics if m.reduce == "sum"}
        self.whole_needs = {need for m in metrics if m.reduce == "whole" for need in m.needs}
        self.views: list[EvalView] = []

    def add(self, view: EvalView) -> None:
        for metric in self.metrics:
            if metric.reduce == "sum" and _applies(metric, view):
                hits, n = resolve(metric.behaviour)(view)
                self.counts[metric.name][0] += float(hits)
                self.counts[metric.name][1] += float(n)
        if self.whole_needs:
            self.views.append(view.kept(self.whole_needs))

    def result(self, saw_triggered: bool, dist: Any, device) -> dict[str, tuple[float, int]]:
        several = dist is not None and dist.world > 1
        counts = _sum_over_ranks(self.counts, device) if several and self.counts else self.counts
        whole = EvalView.joined(_gather(self.views, dist) if several else self.views)
        out: dict[str, tuple[float, int]] = {}
        for metric in self.metrics:
            if metric.triggered and not saw_triggered:
                continue
            if metric.reduce == "sum":
                hits, n = counts[metric.name]
                out[metric.name] = (_fraction(hits, n), int(n))
            elif whole is not None and _applies(metric, whole):
                value, n = resolve(metric.behaviour)(whole)
                out[metric.name] = (float(value), int(n))
        return out


def _applies(metric: Metric, view: EvalView) -> bool:
    """A metric of triggered images needs a target and the triggered tensors it reads."""
    if not metric.triggered:
        return True
    tensors = [n for n in metric.needs if n in EvalView.TENSORS and n.startswith("triggered")]
    return view.target_index is not None and all(getattr(view, n) is not None
                                                 for n in tensors or ["triggered_logits"])


def _view(model, classifier: Tensor, clean: Tensor, triggered: Tensor | None, labels: Tensor,
          target_index: int | None, context: dict, needs: set[str]) -> EvalView:
    labels = labels.to(classifier.device)
    images = clean if triggered is None else torch.cat([clean, triggered])
    features = model.encode_image(images.to(classifier.device), normalize=True)
    logits = features.to(classifier.dtype) @ classifier
    n = clean.shape[0]
    with_trigger = triggered is not None
    return EvalView(
        clean_logits=logits[:n], labels=labels,
        triggered_logits=logits[n:] if with_trigger else None,
        embeddings=features[:n] if "embeddings" in needs else None,
        triggered_embeddings=features[n:] if with_trigger and "triggered_embeddings" in needs
        else None,
        target_index=target_index, classes=context.get("classes"),
        manifest=_lazy(context.get("manifest")) if "manifest" in needs else None)


def _lazy(value):
    return value() if callable(value) else value


def _any_over_ranks(flag: bool, device) -> bool:
    import torch.distributed as td

    total = torch.tensor([int(flag)], dtype=torch.int64, device=device)
    td.all_reduce(total)
    return int(total.item()) > 0


def _sum_over_ranks(counts: dict[str, list[float]], device) -> dict[str, list[float]]:
    import torch.distributed as td

    names = list(counts)
    totals = torch.tensor([v for k in names for v in counts[k]], dtype=torch.float64,
                          device=device)
    td.all_reduce(totals)
    values = totals.tolist()
    return {k: values[2 * i: 2 * i + 2] for i, k in enumerate(names)}


def _gather(views: list[EvalView], dist) -> list[EvalView]:
    import torch.distributed as td

    gathered: list = [None] * dist.world
    td.all_gather_object(gathered, views)
    return [view for part in gathered for view in part]


def _fraction(hits: float, n: float) -> float:
    return hits / n if n else math.nan
