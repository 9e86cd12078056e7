"""`[detect.clip_score]`: the cosine similarity of each pair's image and caption embeddings,
negated: poisoned captions fit their images badly (backdoor_sample_detector/clip_scores.py:13-17;
negated as process_detection_scores.py:176-178 does). SafeCLIP splits pairs on this score."""

from __future__ import annotations

from xspec.extend import XspecModel, register_detector


def score(spec, batch):
    import torch.nn.functional as F

    image = F.normalize(batch.image.float(), dim=-1)
    text = F.normalize(batch.text.float(), dim=-1)
    return -(image * text).sum(dim=-1)


@register_detector("clip_score", score, version="1")
class ClipScore(XspecModel):
    """Negated image-caption cosine similarity (no settings)."""
