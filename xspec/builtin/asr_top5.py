"""`evaluate.metrics = [..., "asr_top5"]`: the attack success rate counted in the top 5: among
triggered images whose true class is not the target, the share with the target among their five
highest-scoring classes. A looser reading of "the backdoor still works" than `asr`: a cleaned
model can push the target off the top-1 spot and keep it close behind.

The whole metric in one file: its name, what it reads of each evaluation batch and its
arithmetic (tensor methods only: no torch import)."""

from __future__ import annotations

from xspec.builtin.accuracy import attack_success
from xspec.extend import register_metric


@register_metric("asr_top5", needs=("triggered_logits", "labels", "target_index"),
                 higher_is_better=False,
                 description="attack success rate in the top 5: triggered non-target images "
                             "with the target among their 5 highest classes")
def asr_top5(view) -> tuple[int, int]:
    return attack_success(view.triggered_logits, view.labels, view.target_index, k=5)
