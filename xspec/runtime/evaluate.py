"""Zero-shot evaluation: classifier weights from templates, then top-1/top-5 and attack success.

Clean and triggered copies of each evaluation batch go through the model in one forward pass, so
the images are decoded once and both metrics come from the same model state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
    counts = {"top1": 0, "top5": 0, "n": 0, "asr": 0, "n_asr": 0}
    saw_triggered = False
    device = classifier.device
    with eval_mode(model):
        for clean, triggered, labels in batches:
            labels = labels.to(device)
            logits = _logits(model, classifier, clean, triggered)
            clean_logits = logits[: clean.shape[0]]
            counts["top1"] += topk_correct(clean_logits, labels, 1)
            counts["top5"] += topk_correct(clean_logits, labels, 5)
            counts["n"] += clean.shape[0]
            if triggered is not None and target_index is not None:
                saw_triggered = True
                hits, n = attack_success(logits[clean.shape[0] :], labels, target_index)
                counts["asr"] += hits
                counts["n_asr"] += n
    if dist is not None and dist.world > 1:
        counts, saw_triggered = _sum_over_ranks(counts, saw_triggered, device)
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
