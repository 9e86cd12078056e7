"""`[pretrain] safeclip`: SafeCLIP (Yang et al., "Better Safe than Sorry", ICML 2024; github
BigML-CS-UCLA/SafeCLIP), a defence while pre-training on poisoned pairs.

Epochs 1..`inmodal_warmup`: in-modal self-supervision only (each image against its
augmentation, each caption too), no image-caption loss. The next `multimodal_warmup` epochs: the
CLIP loss on every pair. After that, at each epoch's start, every pair's image-caption cosine
similarity is computed; the `safe_ratio` most similar pairs are "safe" and get the CLIP loss,
the others "risky" and get only in-modal self-supervision; `safe_ratio` starts at `start_ratio`
and grows by `ratio_step` per epoch up to `cap_ratio` (SafeCLIP/src/main.py:161-247; defaults
SafeCLIP/src/parser.py:54-67).

Where xspec differs (docs/FIDELITY.md): the original runs two loaders per epoch, the risky pairs
then the safe ones; xspec mixes them in each batch (CLIP loss among the batch's safe pairs, SSL
on its risky pairs, weighed by their shares). The original's in-modal loss may take nearest
neighbours from a memory bank (--memory_bank) and uses its own learning rates per phase; xspec
uses its SSL loss and the run's schedule.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from xspec.extend import Fraction, NonNegativeInt, Pieces, Term, XspecModel, register_defence


class SafeClip(XspecModel):
    """SafeCLIP: in-modal warm-up, then CLIP loss only on the most image-caption-similar pairs."""

    inmodal_warmup: NonNegativeInt = 5
    """Epochs of in-modal self-supervision only (the original's --inmodal_warmup)."""
    multimodal_warmup: NonNegativeInt = 1
    """Then epochs of the CLIP loss on every pair (--multimodal_warmup)."""
    start_ratio: Annotated[float, Field(gt=0, le=1)] = 0.15
    """The safe share at the first split (--filter_ratio)."""
    ratio_step: Fraction = 0.01
    """Added to the safe share at each later epoch (--update_filter_ratio)."""
    cap_ratio: Annotated[float, Field(gt=0, le=1)] = 0.85
    """The safe share never exceeds this (--cap_filter_ratio)."""

    @model_validator(mode="after")
    def _cap_above_start(self):
        if self.cap_ratio < self.start_ratio:
            raise ValueError(f"cap_ratio ({self.cap_ratio}) is below start_ratio "
                             f"({self.start_ratio})")
        return self


def safe_ratio(spec: SafeClip, epoch: int) -> float | None:
    """The safe share at a (1-based) epoch; None during the warm-ups."""
    split = epoch - spec.inmodal_warmup - spec.multimodal_warmup
    if split < 1:
        return None
    return min(spec.start_ratio + (split - 1) * spec.ratio_step, spec.cap_ratio)


def split_safe(similarity, ratio: float):
    """Boolean mask of the `ratio` share of pairs with the highest similarity (the original's
    `new_indices[:int(len(similarities)*filter_ratio)]` after a descending sort)."""
    import torch

    order = torch.argsort(torch.as_tensor(similarity), descending=True, stable=True)
    safe = torch.zeros(len(order), dtype=torch.bool)
    safe[order[: int(len(order) * ratio)]] = True
    return safe


def similarities(model, data, device) -> "torch.Tensor":
    """Cosine similarity of every training pair's image and caption (unaugmented)."""
    import torch
    import torch.nn.functional as F

    from xspec.runtime.pipeline import to_device

    n = len(data.captions)
    out = torch.full((n,), float("-inf"))
    order = data.indices.tolist()
    jobs = [(0, order[i:i + data.batch_size]) for i in range(0, len(order), data.batch_size)]
    mode = model.training
    model.eval()
    with torch.no_grad():
        for _, raw in data.loader.run(jobs):
            batch = to_device(raw, device, data.normalize)
            image = model.encode_image(batch["image"])
            text = model.encode_text(batch["text"])
            out[batch["index"]] = F.cosine_similarity(image, text).float().cpu()
    model.train(mode)
    return out


def mixed_loss(features, logit_scale, safe):
    """CLIP loss among the safe pairs and in-modal SSL on the risky ones, weighed by share."""
    from xspec.runtime.objectives import info_nce, ssl

    n, parts = len(safe), []
    if int(safe.sum()) >= 2:
        parts.append(int(safe.sum()) / n * info_nce(features["image"][safe],
                                                    features["text"][safe], logit_scale))
    risky = ~safe
    if int(risky.sum()) >= 2:
        picked = {k: features[k][risky] for k in ("image", "text", "image_aug", "text_aug")}
        parts.append(int(risky.sum()) / n * ssl(picked, logit_scale))
    return sum(parts) if parts else 0.0 * features["image"].sum()


def build(spec: SafeClip, setup) -> Pieces:
    from xspec.runtime.objectives import info_nce, ssl

    state = {"epoch": 0, "safe": None}

    def on_epoch_start(epoch: int) -> None:
        state["epoch"], ratio = epoch, safe_ratio(spec, epoch)
        if ratio is None:
            return
        sims = similarities(setup.model, setup.data, setup.device)
        state["safe"] = split_safe(sims, ratio)
        poisoned = setup.data.poisoned
        risky_poisons = int((~state["safe"].numpy() & poisoned).sum())
        setup.log(f"safeclip epoch {epoch}: {int(state['safe'].sum())} safe pairs "
                  f"({ratio:.2f}); {risky_poisons} of {int(poisoned.sum())} poisons risky")

    def mmcl(model, batch, features):
        scale = model.logit_scale.exp()
        epoch = state["epoch"]
        if epoch <= spec.inmodal_warmup:
            return ssl(features, scale)
        if state["safe"] is None or safe_ratio(spec, epoch) is None:
            return info_nce(features["image"], features["text"], scale)
        safe = state["safe"][batch["index"]].to(features["image"].device)
        return mixed_loss(features, scale, safe)

    weight = setup.config.get("mmcl_weight", 1.0)
    return Pieces(terms=[Term("mmcl", weight, mmcl, replaces=True)],
                  on_epoch_start=on_epoch_start)


register_defence("safeclip", build, annotation=SafeClip | None, default=None, version="1",
                 table="pretrain", views=("image_aug", "text_aug"),
                 description="SafeCLIP (Yang et al. 2024): in-modal warm-up, then the CLIP loss "
                             "only on the growing share of most image-caption-similar pairs.")
