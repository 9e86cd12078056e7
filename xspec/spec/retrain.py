"""`[detect.retrain]`: detect-then-retrain, as Huang et al.'s code does it ("safe mode",
Detect-CLIP-Backdoor-Samples datasets/cc3m.py:165-200): sort the training pairs by one
detector's score, keep the `int(n * (1 - drop))` lowest-scored ones and pre-train again on them
(the original keeps `safe_precentage` of them, scored by DAO: main_clip.py:62)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from xspec.spec.base import NotBool, XspecModel


class Retrain(XspecModel):
    """Pre-train again without the pairs one detector scores highest."""

    detector: str = "dao"
    """The detector whose scores decide (one of the `[detect.<name>]` tables that are on; the
    original reads DAO's scores)."""
    drop: Annotated[float, Field(gt=0, lt=1), NotBool]
    """The share of training pairs dropped, highest scores first (1 - the original's
    `safe_precentage`)."""
