"""`[detect.dao]`: dimensionality-aware outlier detection: each of the k neighbours' LID
weighs the log-ratio of the pair's k-distance to the neighbour's, averaged
(backdoor_sample_detector/dao.py:44-86). Neighbour positions are read as the original reads
them (see slof.py)."""

from __future__ import annotations

from xspec.extend import PositiveInt, XspecModel, register_detector


def score(spec, batch):
    import torch

    from xspec.runtime.detect import lid_mle, neighbours, reference_neighbours, usable_k

    a, idx = neighbours(batch)
    k = usable_k(spec.k, a)
    full = reference_neighbours(batch)
    near = idx[:, :k]
    d_k = full[near][:, :, k]
    lid_k = lid_mle(full, k)[near]
    scores = (lid_k * torch.log(a[:, k].unsqueeze(-1) / d_k)).mean(dim=1)
    return torch.nan_to_num(scores, nan=1000.0, posinf=1000.0, neginf=0.0)


@register_detector("dao", score, version="1")
class Dao(XspecModel):
    """Dimensionality-aware outlier score (Anderberg et al.) of the image embedding."""

    k: PositiveInt = 16
    """The original's default (extract_bd_scores.py:38, --k 16)."""
