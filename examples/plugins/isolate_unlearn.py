"""Isolate-and-unlearn cleaning (after Anti-Backdoor Learning, Li et al., NeurIPS 2021), as an
xspec plugin: a `[clean] isolate_unlearn` table.

Poisoned pairs are learnt faster than clean ones, so their loss drops lower. During the first
`warmup_epochs` this defence only records each pair's contrastive loss (image to caption,
within its batch); at the start of every later epoch it flags the `fraction` of cleaning pairs
with the lowest recorded loss and, while training on, pushes their loss back up to `ceiling`:
the term is weight * mean(max(0, ceiling - loss_i)) over the flagged pairs of a batch (bounded,
unlike plain gradient ascent). It matters when poisons are left in the cleaning set:

    [clean]
    poisons = 60
    isolate_unlearn = { fraction = 0.05, weight = 0.5 }

The log says how many flagged pairs really are poisoned (the run knows; the defence does not
use it). Single-process runs only: with DDP the features are the global batch.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from xspec.extend import Pieces, PositiveFloat, PositiveInt, Term, XspecModel, register_defence

VERSION = "1"


class IsolateUnlearn(XspecModel):
    """Flag the lowest-loss cleaning pairs after a warm-up and push their loss up."""

    fraction: Annotated[float, Field(gt=0, lt=1)] = 0.05
    """Share of the cleaning set flagged as suspect at each epoch start."""
    weight: PositiveFloat = 0.5
    ceiling: PositiveFloat = 5.0
    """Loss up to which flagged pairs are pushed (ln of the batch size is chance level)."""
    warmup_epochs: PositiveInt = 1
    """Epochs that only record losses before the first flagging."""


def build(spec: IsolateUnlearn, setup) -> Pieces:
    import torch
    import torch.nn.functional as F

    losses: dict[int, float] = {}
    flagged: set[int] = set()

    def unlearn(model, batch, features):
        logits = model.logit_scale.exp() * features["image"] @ features["text"].t()
        if len(logits) != len(batch["index"]):
            raise RuntimeError("isolate_unlearn supports single-process runs only")
        per_pair = F.cross_entropy(logits, torch.arange(len(logits), device=logits.device),
                                   reduction="none")
        indices = [int(i) for i in batch["index"]]
        losses.update(zip(indices, per_pair.detach().float().cpu().tolist()))
        mask = torch.tensor([i in flagged for i in indices], device=logits.device)
        if not mask.any():
            return per_pair.sum() * 0.0
        return (spec.ceiling - per_pair[mask]).clamp(min=0).mean()

    def isolate(epoch: int) -> None:
        if epoch <= spec.warmup_epochs or not losses:
            return
        ranked = sorted(losses, key=lambda i: (losses[i], i))
        flagged.clear()
        flagged.update(ranked[:max(1, round(spec.fraction * len(ranked)))])
        poisoned = sum(bool(setup.data.poisoned[i]) for i in flagged)
        setup.log(f"isolate_unlearn: flagged {len(flagged)} of {len(ranked)} pairs before "
                  f"epoch {epoch}; {poisoned} of them are poisoned")

    return Pieces(terms=[Term("isolate_unlearn", spec.weight, unlearn)], on_epoch_start=isolate)


register_defence("isolate_unlearn", build, annotation=IsolateUnlearn | None, default=None,
                 version=VERSION, description=IsolateUnlearn.__doc__)
