"""A cleaned-model selection policy as an xspec plugin: `near_best`, the epoch with the lowest
ASR among the epochs within one point of the run's best top-1 accuracy; among runs, the highest
top-1 (then the lowest ASR). Like the oracle it reads the ASR, so it says what a defender who
could measure the attack would keep while giving up at most one point of accuracy.

It is a row of the report's selection-policy table (scope "clean"); it needs "top1" and "asr"
in `evaluate.metrics`.
"""

from __future__ import annotations

from xspec.extend import register_policy

MARGIN = 0.01  # one point of top-1


def near_best(rows, arg, ctx) -> int:
    best = max(r["top1"] for r in rows)
    near = [r for r in rows if r["top1"] >= best - MARGIN]
    return min(near, key=lambda r: (r["asr"], -r["top1"], r["epoch"]))["epoch"]


register_policy("near_best", near_best, scope=("clean",), needs=("top1", "asr"), version="1",
                label="lowest ASR within 1 point of the best top-1")
