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


def test_a_drop_reads_the_detect_scores_and_records_what_it_left_out(tmp_path):
    import json
    from types import SimpleNamespace

    import pyarrow as pa
    import pyarrow.parquet as pq

    from xspec.runtime.retrain import training_indices

    detect, run = tmp_path / "detect", tmp_path / "run"
    detect.mkdir(), run.mkdir()
    pq.write_table(pa.table({"index": [3, 0, 2, 1], "clip": [0.9, 0.1, 0.2, 0.8]}),
                   detect / "scores.parquet")  # rows out of index order, as a detector may write
    ctx = SimpleNamespace(cfg=SimpleNamespace(drop=SimpleNamespace(detector="clip", drop=0.5)),
                          dep=lambda kind: SimpleNamespace(path=detect),
                          run=SimpleNamespace(path=run), log=lambda message: None)
    kept = training_indices(ctx, np.array([False, True, False, True]))
    assert kept.tolist() == [0, 2]
    found = json.loads((run / "dropped.json").read_text())
    assert (found["dropped_indices"], found["poisons_kept"]) == ([1, 3], 0)


def test_a_training_node_does_not_import_pandas():
    """Every pretrain node imports xspec.runtime.retrain; pandas (~36 MB resident) is imported
    only by a node that drops pairs, so the others do not hold it (bench/bench_memory.py)."""
    import subprocess
    import sys

    probe = ("import sys\nimport xspec.runtime.node, xspec.runtime.stages.pretrain\n"
             "import xspec.runtime.stages.clean\nprint('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[-1] == "False"
