"""`[detect.lid]`: the local intrinsic dimensionality of an image's embedding, estimated by
maximum likelihood from its k nearest neighbours among the batch's other image and caption
embeddings (backdoor_sample_detector/lid_detection.py:44-55)."""

from __future__ import annotations

from xspec.extend import PositiveInt, XspecModel, register_detector


def score(spec, batch):
    from xspec.runtime.detect import lid_mle, neighbours, usable_k

    a, _ = neighbours(batch)
    return lid_mle(a, usable_k(spec.k, a))


@register_detector("lid", score, version="1")
class Lid(XspecModel):
    """LID (MLE) of the image embedding."""

    k: PositiveInt = 64
    """The original builds its LID detector with k = 64 (extract_bd_scores.py:113-114)."""
