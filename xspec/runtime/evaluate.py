"""Zero-shot evaluation: classifier weights from templates, then top-1/top-5 and attack success.

Clean and triggered copies of each evaluation batch go through the model in one forward pass, so
the images are decoded once and both metrics come from the same model state.
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


def topk_correct(logits: Tensor, labels: Tensor, k: int) -> int:
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return int((top == labels.view(-1, 1)).any(dim=-1).sum())


def attack_success(logits: Tensor, labels: Tensor, target_index: int) -> tuple[int, int]:
    """(hits, n): among images whose true class is not the target, how many are predicted as it."""
    eligible = labels != target_index
    hits = (logits.argmax(dim=-1) == target_index) & eligible
    return int(hits.sum()), int(eligible.sum())


def evaluate(
    model: Any,
    classifier: Tensor,
    batches: Iterable[Batch],
    target_index: int | None,
    dist: Any = None,
) -> dict[str, tuple[float, int]]:
    """{"top1", "top5", "asr"}: (fraction, denominator); a fraction over 0 images is NaN.
    "asr" is present only with a target and at least one triggered batch. With `dist` of
    several ranks, each passes its share of the batches and the counts are summed over ranks."""
    return evaluate_many([model], [classifier], batches, target_index, dist)[0]


def evaluate_many(
    models: Sequence[Any],
    classifiers: Sequence[Tensor],
    batches: Iterable[Batch],
    target_index: int | None,
    dist: Any = None,
) -> list[dict[str, tuple[float, int]]]:
    """`evaluate` for several models on one pass over the batches: each batch is decoded and
    triggered once and scored by every model (a packed grid's members)."""
    counts = [{"top1": 0, "top5": 0, "n": 0, "asr": 0, "n_asr": 0} for _ in models]
    saw_triggered = False
    with ExitStack() as stack:
        for model in models:
            stack.enter_context(eval_mode(model))
        for clean, triggered, labels in batches:
            saw_triggered |= triggered is not None and target_index is not None
            for model, classifier, count in zip(models, classifiers, counts):
                _score(model, classifier, clean, triggered, labels, target_index, count)
    results = []
    for count, classifier in zip(counts, classifiers):
        seen = saw_triggered
        if dist is not None and dist.world > 1:
            count, seen = _sum_over_ranks(count, saw_triggered, classifier.device)
        results.append(_result(count, seen))
    return results


def _score(model, classifier: Tensor, clean: Tensor, triggered: Tensor | None, labels: Tensor,
           target_index: int | None, counts: dict) -> None:
    labels = labels.to(classifier.device)
    logits = _logits(model, classifier, clean, triggered)
    clean_logits = logits[: clean.shape[0]]
    counts["top1"] += topk_correct(clean_logits, labels, 1)
    counts["top5"] += topk_correct(clean_logits, labels, 5)
    counts["n"] += clean.shape[0]
    if triggered is not None and target_index is not None:
        hits, n = attack_success(logits[clean.shape[0] :], labels, target_index)
        counts["asr"] += hits
        counts["n_asr"] += n


def _result(counts: dict, saw_triggered: bool) -> dict[str, tuple[float, int]]:
    result = {
        "top1": (_fraction(counts["top1"], counts["n"]), counts["n"]),
        "top5": (_fraction(counts["top5"], counts["n"]), counts["n"]),
    }
    if saw_triggered:
        result["asr"] = (_fraction(counts["asr"], counts["n_asr"]), counts["n_asr"])
    return result


def _sum_over_ranks(counts: dict[str, int], saw_triggered: bool, device
                    ) -> tuple[dict[str, int], bool]:
    import torch.distributed as td

    names = list(counts)
    totals = torch.tensor([counts[k] for k in names] + [int(saw_triggered)], dtype=torch.int64,
                          device=device)
    td.all_reduce(totals)
    values = totals.tolist()
    return dict(zip(names, values)), values[-1] > 0


def _logits(model: Any, classifier: Tensor, clean: Tensor, triggered: Tensor | None) -> Tensor:
    images = clean if triggered is None else torch.cat([clean, triggered])
    features = model.encode_image(images.to(classifier.device), normalize=True)
    return features.to(classifier.dtype) @ classifier


def _fraction(hits: int, n: int) -> float:
    return hits / n if n else math.nan
