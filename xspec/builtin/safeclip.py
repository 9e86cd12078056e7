"""`[pretrain] safeclip`: SafeCLIP (Yang et al., "Better Safe than Sorry", ICML 2024; github
BigML-CS-UCLA/SafeCLIP), a defence while pre-training on poisoned pairs. It follows the authors'
code (SafeCLIP/src/main.py:161-231, train.py, scheduler.py; defaults parser.py:37-67):

Epochs 1..`inmodal_warmup`: in-modal self-supervision only (each augmented image against the
images of its batch, each augmented caption too, `train.py:55-58`; with `memory_bank` against
each one's nearest neighbour in a FIFO bank, `train.py:49-54`). The next `multimodal_warmup`
epochs: the CLIP loss on every pair (with `cross_aug`, image vs augmented caption and caption vs
augmented image, `train.py:59-62`) at the constant `filter_lr` (`train.py:86`, `scheduler.py:34`).
Then at each epoch's start every pair's image-caption cosine similarity is computed; at the
first split a two-component Gaussian mixture is fitted and the pairs whose probability of the
higher-mean component is at least `gmm_threshold` are "safe", their share the start ratio
(`main.py:196-206`; `first_split = "ratio"` takes the `start_ratio` most similar instead, the
parser's `--filter_ratio`, used by the code only on resume, `main.py:125-136`); each later epoch
the share grows by `ratio_step` up to `cap_ratio` (`main.py:212-215`), safe pairs taken in the
mixture's order. With `loaders = "two"` (the code's) an epoch trains the risky pairs with the
in-modal loss, then the safe pairs with the CLIP loss, each in its own shuffled batches
(`main.py:216-229`); "mixed" mixes both in each batch (xspec's first version). With `phase_lr`
each phase has the code's own warm-up + cosine schedule at its own step index (`train.py:101-105`,
`scheduler.py:21-45`); without it the run's schedule applies.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from xspec.extend import (
    Fraction, NonNegativeInt, Pieces, PositiveFloat, Term, XspecModel, register_defence,
)


class SafeClip(XspecModel):
    """SafeCLIP: in-modal warm-up, then CLIP loss only on the most image-caption-similar pairs."""

    inmodal_warmup: NonNegativeInt = 5
    """Epochs of in-modal self-supervision only (the original's --inmodal_warmup)."""
    multimodal_warmup: NonNegativeInt = 1
    """Then epochs of the CLIP loss on every pair (--multimodal_warmup)."""
    first_split: Literal["gmm", "ratio"] = "gmm"
    """How the first split's safe share is found: a Gaussian mixture over the similarities (the
    code) or `start_ratio` (the parser's --filter_ratio)."""
    gmm_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.9
    """At the first split, pairs this likely in the higher-mean component are safe (main.py:202)."""
    start_ratio: Annotated[float, Field(gt=0, le=1)] = 0.15
    """The safe share at the first split when `first_split = "ratio"` (--filter_ratio)."""
    ratio_step: Fraction = 0.01
    """Added to the safe share at each later epoch (--update_filter_ratio)."""
    cap_ratio: Annotated[float, Field(gt=0, le=1)] = 0.85
    """The safe share grows to at most this (--cap_filter_ratio)."""
    loaders: Literal["two", "mixed"] = "two"
    """"two": risky pairs (in-modal) then safe pairs (CLIP loss) each epoch, as the code;
    "mixed": both in each batch, weighed by their shares."""
    cross_aug: bool = True
    """CLIP loss between each image and its augmented caption and each caption and its augmented
    image (the code's default --cross_aug); false: plain image-caption pairs."""
    memory_bank: NonNegativeInt = 0
    """In-modal positives from a nearest-neighbour bank of this many embeddings per modality
    (--memory_bank with --memory_bank_size; off by default, as there)."""
    phase_lr: bool = True
    """Each phase's learning-rate schedule as the code's (the run's lr for --in_lr and
    --cross_lr, its warmup_steps for --num_warmup_steps); false: the run's one schedule."""
    filter_lr: PositiveFloat = 5e-6
    """The constant rate of the multimodal warm-up epochs with `phase_lr` (--filter_lr)."""

    @model_validator(mode="after")
    def _cap_above_start(self):
        if self.first_split == "ratio" and self.cap_ratio < self.start_ratio:
            raise ValueError(f"cap_ratio ({self.cap_ratio}) is below start_ratio "
                             f"({self.start_ratio})")
        return self


def safe_ratio(spec: SafeClip, epoch: int, first: float | None = None) -> float | None:
    """The safe share at a (1-based) epoch given the first split's share (`start_ratio` when
    None); None during the warm-ups. The cap applies from the second split on (main.py:215)."""
    split = epoch - spec.inmodal_warmup - spec.multimodal_warmup
    if split < 1:
        return None
    first = spec.start_ratio if first is None else first
    return first if split == 1 else min(first + (split - 1) * spec.ratio_step, spec.cap_ratio)


def split_safe(similarity, ratio: float):
    """Boolean mask of the `ratio` share of pairs with the highest similarity."""
    import torch

    order = torch.argsort(torch.as_tensor(similarity), descending=True, stable=True)
    safe = torch.zeros(len(order), dtype=torch.bool)
    safe[order[: int(len(order) * ratio)]] = True
    return safe


def gmm_order(similarity):
    """(pair positions in the code's safe order, their clean probabilities): sorted by
    similarity, a 2-component GaussianMixture(random_state=0) fitted, then sorted by the
    probability of the higher-mean component (main.py:193-198, samplers.py fit_gmm_to_cos_sim)."""
    import numpy as np
    from sklearn.mixture import GaussianMixture

    sims = np.asarray(similarity, dtype=np.float64)
    by_sim = np.argsort(-sims, kind="stable")
    gmm = GaussianMixture(n_components=2, random_state=0).fit(sims[by_sim].reshape(-1, 1))
    clean = gmm.predict_proba(sims[by_sim].reshape(-1, 1))[:, int(np.argmax(gmm.means_))]
    by_clean = np.argsort(-clean, kind="stable")
    return by_sim[by_clean], clean[by_clean]


def choose_safe(spec: SafeClip, similarity, epoch: int, first: float | None):
    """(safe mask over the given pairs, the first split's share) at a split epoch."""
    import torch

    n = len(similarity)
    if spec.first_split == "ratio":
        first = spec.start_ratio
        return split_safe(similarity, safe_ratio(spec, epoch, first)), first
    order, clean = gmm_order(similarity)
    safe = torch.zeros(n, dtype=torch.bool)
    if first is None:  # the first split: the mixture's confident pairs (main.py:202-205)
        chosen = order[clean >= spec.gmm_threshold]
        first = len(chosen) / n
    else:
        chosen = order[: int(n * safe_ratio(spec, epoch, first))]
    safe[torch.as_tensor(chosen, dtype=torch.long)] = True
    return safe, first


def cosine_lr(step: int, base_lr: float, warmup: int, total: float) -> float:
    """The code's cosine_scheduler (scheduler.py:32-43): no clamp past the end; where the
    cosine would span no steps (the code divides by zero) it spans one."""
    import math

    if step < warmup:
        return base_lr * (step + 1) / warmup
    span = total - warmup if total - warmup > 0 else 1
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / span)) * base_lr


def phase_lr(spec: SafeClip, lr: float, warmup: int, epochs: int, epoch: int, phase: str,
             index: int, loader_batches: int, all_batches: int, first: float | None) -> float:
    """The code's rate for step `index` of a phase's loader (train.py:86-105, main.py:109,
    207-210, scheduler.py:21-29 with loader_update_freq 1)."""
    warm = spec.inmodal_warmup + spec.multimodal_warmup
    if epoch <= warm:
        if phase == "cross":
            return spec.filter_lr
        return cosine_lr(all_batches * epoch + index, lr, warmup, all_batches * warm)
    total = sum((i * spec.ratio_step + first) * all_batches for i in range(epochs - warm))
    if phase == "inmodal":
        return cosine_lr(loader_batches * epoch + index, lr, warmup, total)
    return cosine_lr(int(total // (epochs - warm)) * epoch + index, lr, warmup, total)


def inmodal_loss(features, logit_scale, banks=None):
    """Each augmented image against the batch's images (or their nearest bank entries), each
    augmented caption likewise; CE over rows (train.py:49-58, 74-77)."""
    import torch
    import torch.nn.functional as F

    image, text = features["image"], features["text"]
    if banks is not None:
        image, text = banks[0].nearest(image.detach()), banks[1].nearest(text.detach())
        banks[0].push(features["image"]), banks[1].push(features["text"])
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logit_scale * features["image_aug"] @ image.t().to(image.dtype),
                            target)
            + F.cross_entropy(logit_scale * features["text_aug"] @ text.t().to(text.dtype),
                              target)) / 2


def cross_loss(features, logit_scale, cross_aug: bool):
    """The CLIP loss as the code computes it (train.py:59-66, 79)."""
    import torch
    import torch.nn.functional as F

    image, text = features["image"], features["text"]
    if cross_aug:
        per_image = logit_scale * image @ features["text_aug"].t()
        per_text = logit_scale * text @ features["image_aug"].t()
    else:
        per_image = logit_scale * image @ text.t()
        per_text = per_image.t()
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2


def mixed_loss(features, logit_scale, safe):
    """`loaders = "mixed"`: CLIP loss among the safe pairs and in-modal SSL on the risky ones,
    weighed by share."""
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


def similarities(model, data, device) -> "torch.Tensor":
    """Cosine similarity of every training pair's image and caption (unaugmented); -inf for
    pairs not trained on or unreadable."""
    import torch
    import torch.nn.functional as F

    from xspec.runtime.pipeline import to_device

    out = torch.full((len(data.captions),), float("-inf"))
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


class PhasedBatches:
    """The epoch's batches as the code's loaders give them; `state` says which phase and step
    of its loader each batch is (read by the loss term and the rate hook)."""

    def __init__(self, spec: SafeClip, data, state: dict):
        self.spec, self.data, self.state = spec, data, state

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch

    def batches(self, epoch: int, dist):
        from xspec.errors import XspecError

        if dist.world > 1 and self.spec.memory_bank:
            raise XspecError("pretrain.safeclip.memory_bank: one process only (the code gathers "
                             "features over GPUs before the bank); set memory_bank = 0 or run "
                             "on one GPU")
        safe, warm = self.state["safe"], epoch <= self.spec.inmodal_warmup
        if safe is None or self.spec.loaders == "mixed":
            phase = "inmodal" if warm else ("cross" if safe is None else "mixed")
            yield from self._phase(phase, None, epoch, dist)
            return
        kept = self.data.indices
        yield from self._phase("inmodal", kept[~safe.numpy()[kept]], epoch, dist)
        yield from self._phase("cross", kept[safe.numpy()[kept]], epoch, dist)

    def _phase(self, phase: str, indices, epoch: int, dist):
        from xspec.runtime.pipeline import to_device
        from xspec.runtime.seeding import generator
        import torch

        if indices is None:
            self.state.update(phase=phase, batches=self.data.steps_per_epoch)
            for number, batch in enumerate(self.data.batches(epoch, dist)):
                self.state["index"] = number
                yield batch
            return
        size = self.data.batch_size
        order = indices[torch.randperm(len(indices), generator=generator(
            self.data.seed, f"safeclip-{phase}", epoch)).numpy()]
        jobs = [(epoch, dist.shard(order[i * size:(i + 1) * size].tolist()))
                for i in range(len(order) // size)]  # drop_last, as get_subset_dataloader
        self.state.update(phase=phase, batches=len(jobs))
        for number, ((_, wanted), raw) in enumerate(self.data.loader.run(jobs)):
            self.data.skipped.update(set(wanted) - set(raw["index"].tolist()))
            if len(raw["index"]) >= 2:
                self.state["index"] = number
                yield to_device(raw, self.data.device, self.data.normalize)


def build(spec: SafeClip, setup) -> Pieces:
    import numpy as np

    from xspec.builtin.roclip import CaptionPool
    from xspec.runtime.defence_state import EpochState
    from xspec.runtime.optim import set_lr

    state = {"epoch": 0, "safe": None, "first": None, "phase": "inmodal", "index": 0,
             "batches": 1}
    kept = EpochState(setup.checkpoints, "safeclip")
    banks = []

    def on_epoch_start(epoch: int) -> None:
        state["epoch"] = epoch
        if state["first"] is None and (saved := kept.load(epoch - 1)) is not None:
            state["first"] = saved["first"]  # a resumed run keeps the first split's share
        if safe_ratio(spec, epoch, 0.0) is None:
            return
        sims = similarities(setup.model, setup.data, setup.device).numpy()
        chosen = setup.data.indices[np.isfinite(sims[setup.data.indices])]
        safe, state["first"] = choose_safe(spec, sims[chosen], epoch, state["first"])
        state["safe"] = _over_all(safe, chosen, len(sims))
        poisoned = setup.data.poisoned
        risky_poisons = int((~state["safe"].numpy() & poisoned).sum())
        setup.log(f"safeclip epoch {epoch}: {int(state['safe'].sum())} safe pairs "
                  f"({safe_ratio(spec, epoch, state['first']):.2f}); {risky_poisons} of "
                  f"{int(poisoned.sum())} poisons risky")

    def on_epoch_end(epoch: int) -> None:
        if state["first"] is not None:
            kept.save(epoch, {"first": state["first"]})

    def before_step(step: int) -> None:
        if spec.phase_lr:
            cfg = setup.config
            set_lr(setup.optimizer, phase_lr(
                spec, cfg.lr, cfg.warmup_steps, cfg.epochs, state["epoch"],
                "cross" if state["phase"] == "mixed" else state["phase"], state["index"],
                state["batches"], setup.data.steps_per_epoch, state["first"]))

    def mmcl(model, batch, features):
        scale = model.logit_scale.exp()
        if state["phase"] == "inmodal":
            if spec.memory_bank and not banks:
                dim = features["image"].shape[1]
                banks.extend(CaptionPool(spec.memory_bank, dim, setup.seed + i, setup.device)
                             for i in range(2))
            return inmodal_loss(features, scale, banks or None)
        if state["phase"] == "cross":
            return cross_loss(features, scale, spec.cross_aug)
        safe = state["safe"][batch["index"]].to(features["image"].device)
        return mixed_loss(features, scale, safe)

    weight = setup.config.mmcl_weight
    return Pieces(terms=[Term("mmcl", weight, mmcl, replaces=True)],
                  on_epoch_start=on_epoch_start, on_epoch_end=on_epoch_end,
                  before_step=before_step, batches=PhasedBatches(spec, setup.data, state))


def _over_all(safe, chosen, n: int):
    """A mask over the chosen pairs as a mask over all n pairs."""
    import torch

    out = torch.zeros(n, dtype=torch.bool)
    out[torch.as_tensor(chosen, dtype=torch.long)] = safe
    return out


register_defence("safeclip", build, annotation=SafeClip | None, default=None, version="2",
                 table="pretrain", views=("image_aug", "text_aug"),
                 description="SafeCLIP (Yang et al. 2024): in-modal warm-up, then the CLIP loss "
                             "only on the growing share of most image-caption-similar pairs.")
