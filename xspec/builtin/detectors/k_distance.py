"""`[detect.k_distance]`: the distance from an image's embedding to its k-th nearest neighbour
among the batch's other image and caption embeddings; poisoned pairs sit far from the rest
(backdoor_sample_detector/k_distance.py:43-48)."""

from __future__ import annotations

from xspec.extend import PositiveInt, XspecModel, register_detector


def score(spec, batch):
    from xspec.runtime.detect import neighbours, usable_k

    a, _ = neighbours(batch)
    return a[:, usable_k(spec.k, a)]


@register_detector("k_distance", score, version="1")
class KDistance(XspecModel):
    """Distance to the k-th nearest neighbour (Huang et al.'s k-distance)."""

    k: PositiveInt = 16
    """The original's default (extract_bd_scores.py:38, --k 16)."""
