"""`[detect.isolation_forest]`: an isolation forest fitted on the batch's image and caption
embeddings, scoring the images (backdoor_sample_detector/isolation_forest.py:33-37). The
original's `score_samples` is high for normal points and is negated when scored
(process_detection_scores.py:176-178); here the score is negated at once, and the forest's
randomness comes from the seed (the original leaves it unseeded)."""

from __future__ import annotations

from xspec.extend import PositiveInt, XspecModel, register_detector


def score(spec, batch):
    import torch
    from sklearn.ensemble import IsolationForest

    reference = torch.cat([batch.image, batch.text]).float().cpu().numpy()
    forest = IsolationForest(n_estimators=spec.n_estimators, random_state=batch.seed % (2**32))
    forest.fit(reference)
    return -torch.as_tensor(forest.score_samples(batch.image.float().cpu().numpy()))


@register_detector("isolation_forest", score, version="1")
class IsolationForestDetector(XspecModel):
    """Isolation forest (Liu et al.) over the batch's embeddings."""

    n_estimators: PositiveInt = 100
