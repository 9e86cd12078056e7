"""`[detect.slof]`: simplified local outlier factor: an image's k-distance over the
k-distances of its k nearest neighbours, averaged (backdoor_sample_detector/slof.py:43-64).

As in the original, the neighbours' positions are read from the sorted distance row, whose
columns drop the pair's own image and caption, and index the batch's [images; captions]
reference rows (slof.py:56-59): kept as written, so scores equal the original's."""

from __future__ import annotations

from xspec.extend import PositiveInt, XspecModel, register_detector


def score(spec, batch):
    import torch

    from xspec.runtime.detect import neighbours, reference_neighbours, usable_k

    a, idx = neighbours(batch)
    k = usable_k(spec.k, a)
    full = reference_neighbours(batch)
    d_k = full[idx[:, :k]][:, :, k]
    scores = (a[:, k].unsqueeze(-1) / d_k).mean(dim=1)
    return torch.nan_to_num(scores, nan=1000.0, posinf=1000.0, neginf=0.0)


@register_detector("slof", score, version="1")
class Slof(XspecModel):
    """Simplified local outlier factor of the image embedding."""

    k: PositiveInt = 16
    """The original's default (extract_bd_scores.py:38, --k 16)."""
