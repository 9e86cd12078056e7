"""What a metric reads: `EvalView`, one evaluation batch (or, for `reduce="whole"` metrics, the
whole evaluation set) of one model, as tensors. Fields a metric did not declare in `needs` may be
None."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class EvalView:
    """- clean_logits  [B, C] zero-shot logits of the clean images (image features @ classifier);
    - triggered_logits  [B, C] the same images with the attack's trigger, or None (no attack);
    - embeddings  [B, D] L2-normalised image features of the clean images ("embeddings");
    - triggered_embeddings  [B, D] those of the triggered images ("triggered_embeddings");
    - labels  [B] true class indices; target_index: the attack's target class, or None;
    - classes: the evaluation class names; manifest: the poison node's manifest.json as a dict
      ({"poisoned": [{"index", "key", "caption"}, ...], ...}), when a metric needs it.
    Row i of every tensor is the same image."""

    clean_logits: Any = None
    triggered_logits: Any = None
    embeddings: Any = None
    triggered_embeddings: Any = None
    labels: Any = None
    target_index: int | None = None
    classes: Any = None
    manifest: Any = None

    TENSORS = ("clean_logits", "triggered_logits", "embeddings", "triggered_embeddings",
               "labels")

    def kept(self, needs: set[str]) -> EvalView:
        """Only the needed tensors, detached on the CPU (kept until the set is scored)."""
        moved = {f.name: (getattr(self, f.name).detach().cpu()
                          if f.name in needs and getattr(self, f.name) is not None else None)
                 for f in fields(self) if f.name in self.TENSORS}
        return replace(self, **moved)

    @classmethod
    def joined(cls, views: list[EvalView]) -> EvalView | None:
        """The views' tensors concatenated along the batch: the whole evaluation set."""
        if not views:
            return None
        import torch

        first = views[0]
        tensors = {name: torch.cat([getattr(v, name) for v in views])
                   for name in cls.TENSORS if getattr(first, name) is not None}
        return replace(first, **tensors)
