"""An evaluation metric as an xspec plugin: `trigger_shift`, the mean cosine similarity between
each evaluation image's embedding and its triggered copy's (1: the trigger leaves the image
where it was; a working backdoor pulls triggered images away, toward the target). Computed
once on the whole evaluation set (`reduce="whole"`); n is the number of images.

    [evaluate]
    metrics = ["top1", "top5", "asr", "trigger_shift"]
"""

from __future__ import annotations

from xspec.extend import register_metric


@register_metric("trigger_shift", needs=("embeddings", "triggered_embeddings"), reduce="whole",
                 version="1", description="mean cosine similarity of an image's embedding and "
                                          "its triggered copy's")
def trigger_shift(view) -> tuple[float, int]:
    similarity = (view.embeddings * view.triggered_embeddings).sum(dim=-1)
    return float(similarity.mean()), len(similarity)
