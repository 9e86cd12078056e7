"""`[detect]`: score every training pair of a pre-trained model for being poisoned.

The table's own fields are here; each registered detector (`xspec.extend.DETECTORS`) adds a
`[detect.<name>]` table of its settings, on when present:

```toml
[detect]
batch_size = 2048      # pairs scored together: the k-NN detectors' reference set
[detect.k_distance]    # the original's defaults
[detect.lid]
k = 64
[detect.retrain]       # optional: drop the top-scored pairs and pre-train again
detector = "dao"
drop = 0.05
```
"""

from __future__ import annotations

from pydantic import Field, create_model, model_validator

from xspec.extend.registry import DETECTORS
from xspec.spec.base import PositiveInt, XspecModel
from xspec.spec.retrain import Retrain


class Detect(XspecModel):
    """Detection of poisoned pairs downstream of each selected pre-trained model: every
    training pair gets a score per detector, compared with the poison manifest (AUROC, AUPRC,
    TPR at 1 % FPR)."""

    batch_size: PositiveInt = 2048
    """Pairs scored together, shuffled from the seed; the k-NN detectors compare each pair with
    the others of its batch (the original scores batches of 2 x its training batch, 2048)."""

    retrain: Retrain | None = None
    """Detect-then-retrain: drop the `drop` share of training pairs that `detector` scores
    highest and pre-train again from scratch on the rest (a second pretrain node)."""

    @model_validator(mode="after")
    def _some_detector(self):
        if not self.detectors():
            raise ValueError("name at least one detector as a [detect.<name>] table; "
                             f"registered: {', '.join(DETECTORS.names())}")
        if self.retrain is not None and self.retrain.detector not in self.detectors():
            raise ValueError(f"retrain.detector = '{self.retrain.detector}' is not one of the "
                             f"detectors that are on: {', '.join(sorted(self.detectors()))}")
        return self

    def detectors(self) -> dict[str, XspecModel]:
        """The detectors that are on, by name."""
        return {d.name: getattr(self, d.name) for d in DETECTORS
                if getattr(self, d.name, None) is not None}


def detect_model() -> type[Detect]:
    """`Detect` with one optional table per registered detector."""
    return create_model("Detect", __base__=Detect, __doc__=Detect.__doc__, **{
        d.name: (d.spec | None, Field(None, description=d.description or None))
        for d in DETECTORS})
