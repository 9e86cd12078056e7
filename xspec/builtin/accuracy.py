"""The evaluation metrics every study starts with, in the one-file form: zero-shot `top1` and
`top5` on the clean images, and `asr`, the attack success rate: among triggered images whose
true class is not the target, the share predicted as the target (top-1).

Each is a per-batch count (`reduce="sum"`): (hits, n), summed over batches and ranks. The
arithmetic uses tensor methods only, so importing this file imports no torch."""

from __future__ import annotations

from xspec.extend import register_metric


def topk_correct(logits, labels, k: int) -> int:
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return int((top == labels.view(-1, 1)).any(dim=-1).sum())


def attack_success(logits, labels, target_index: int, k: int = 1) -> tuple[int, int]:
    """(hits, n): among images whose true class is not the target, how many have the target
    among their top-k predictions (k = 1: predicted as it)."""
    eligible = labels != target_index
    if k == 1:
        predicted = logits.argmax(dim=-1) == target_index
    else:
        top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
        predicted = (top == target_index).any(dim=-1)
    return int((predicted & eligible).sum()), int(eligible.sum())


@register_metric("top1", needs=("clean_logits", "labels"),
                 description="zero-shot top-1 accuracy on the clean evaluation images")
def top1(view) -> tuple[int, int]:
    return topk_correct(view.clean_logits, view.labels, 1), len(view.labels)


@register_metric("top5", needs=("clean_logits", "labels"),
                 description="zero-shot top-5 accuracy on the clean evaluation images")
def top5(view) -> tuple[int, int]:
    return topk_correct(view.clean_logits, view.labels, 5), len(view.labels)


@register_metric("asr", needs=("triggered_logits", "labels", "target_index"),
                 higher_is_better=False,
                 description="attack success rate: triggered non-target images predicted as "
                             "the target")
def asr(view) -> tuple[int, int]:
    return attack_success(view.triggered_logits, view.labels, view.target_index)
