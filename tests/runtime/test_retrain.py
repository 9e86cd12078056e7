"""Detect-then-retrain keeps the lowest-scored pairs, as the original's safe mode
(Detect-CLIP-Backdoor-Samples datasets/cc3m.py:169-179)."""

import numpy as np

from xspec.runtime.retrain import kept_pairs


def original_safe_set(scores: np.ndarray, safe_precentage: float) -> np.ndarray:
    """The original's arithmetic: argsort ascending, keep the first int(n * share)."""
    split = int(len(scores) * safe_precentage)
    return np.sort(np.argsort(scores)[:split])


def test_the_top_scored_pairs_are_dropped():
    scores = np.array([0.1, 9.0, 0.3, 7.0, 0.2, 0.0, 8.0, 0.4, 0.5, 0.6])
    kept = kept_pairs(scores, 0.3)
    assert kept.tolist() == [0, 2, 4, 5, 7, 8, 9]
    assert set(range(10)) - set(kept.tolist()) == {1, 3, 6}


def test_same_pairs_as_the_original_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1003)
    for drop in (0.01, 0.05, 0.5):
        assert np.array_equal(kept_pairs(scores, drop), original_safe_set(scores, 1 - drop))


def test_unscored_pairs_are_dropped_first():
    scores = np.array([0.5, np.nan, 0.1, 0.9])
    assert kept_pairs(scores, 0.25).tolist() == [0, 2, 3]
