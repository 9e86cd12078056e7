"""`[pretrain]` and `[clean]`: the training runs, and the built-in loss parts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from xspec.extend.registry import LOSS_PARTS, register_loss
from xspec.spec.base import (
    NonNegativeFloat, NonNegativeInt, OmitAtDefault, PerMember, PositiveFloat, PositiveInt,
    XspecModel,
)
from xspec.spec.fidelity import FidelityOptions
from xspec.spec.policies import parse_policy
from xspec.spec.tables.model import StudyOutput

register_loss("mmcl", ("image", "text"), "xspec.runtime.objectives:mmcl")
register_loss("ssl", ("image", "text", "image_aug", "text_aug"), "xspec.runtime.objectives:ssl")


def check_objective(value: str) -> str:
    """Registered loss parts joined by "+", each once: "mmcl", "ssl", "mmcl+ssl", ..."""
    parts = value.split("+")
    unknown = [p for p in parts if p not in LOSS_PARTS]
    if unknown or len(set(parts)) != len(parts):
        names = LOSS_PARTS.names()
        more = " or any of them joined by '+'" if len(names) > 2 else ""
        raise ValueError(f"unknown value '{value}'; allowed: {', '.join(names)}, "
                         f"{'+'.join(names[:2])}{more}")
    return value


Objective = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*(\+[a-z_][a-z0-9_]*)*$")]


class Training(FidelityOptions):
    objective: Objective = "mmcl+ssl"
    """mmcl: the CLIP loss; ssl: image-image and text-text InfoNCE on augmentations; or both."""
    mmcl_weight: Annotated[NonNegativeFloat, PerMember] = 1.0
    ssl_weight: Annotated[NonNegativeFloat, PerMember] = 1.0
    batch_size: PositiveInt = 128
    """Pairs per optimiser step, over all GPUs of a run (the global batch); or
    { per_device = <pairs>, devices = <count> }, their product."""
    epochs: Annotated[PositiveInt, PerMember] = 20
    lr: Annotated[PositiveFloat, PerMember] = 1e-5
    """Peak AdamW learning rate: linear warm-up, then cosine to 0."""
    weight_decay: Annotated[NonNegativeFloat, PerMember] = 0.1
    """AdamW weight decay on weights with ndim >= 2 (not biases, norms, logit_scale)."""
    warmup_steps: Annotated[NonNegativeInt, PerMember] = 50
    schedule: Annotated[Literal["paper", "cleanclip"], OmitAtDefault] = "paper"
    """paper: warm-up from the first step, then cosine to 0 over the run. cleanclip: the original
    code's step index (epoch x steps per epoch + batch, epochs from 1), which starts past any
    warm-up shorter than an epoch and runs the cosine one epoch late (docs/FIDELITY.md)."""
    text_augment: Annotated[Literal["per_epoch", "once"], OmitAtDefault] = "per_epoch"
    """EDA caption augmentation for SSL: drawn afresh every epoch, or once per pair for the whole
    run, as the original code does (it augments every caption once when loading)."""

    @property
    def weights(self) -> dict[str, float]:
        """Each loss part's weight (`<part>_weight`)."""
        return {"mmcl": self.mmcl_weight, "ssl": self.ssl_weight}

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        return check_objective(value)

    @model_validator(mode="after")
    def _weights_match_objective(self):
        if "mmcl" in self.objective.split("+") and self.mmcl_weight == 0:
            raise ValueError(f"objective '{self.objective}' uses mmcl but mmcl_weight is 0")
        if "ssl" in self.objective.split("+") and self.ssl_weight == 0:
            raise ValueError(f"objective '{self.objective}' uses ssl but ssl_weight is 0")
        return self


class Pretrain(Training):
    objective: Objective = "mmcl"
    epochs: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    warmup_steps: NonNegativeInt = 10_000
    select: str = "best_accuracy"
    """The checkpoint cleaning starts from: best_accuracy, final, epoch(N), or
    match_accuracy(<objective>) (the epoch whose accuracy is closest to that run's best)."""

    @field_validator("select")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        parse_policy(value)
        return value


class Clean(Training):
    """Cleaning; the registered defences (`xspec.extend.DEFENCES`) add their fields to it."""

    poisons: Annotated[NonNegativeInt, OmitAtDefault] = 0
    """Poisoned pairs left inside the cleaning set (non-ideal cleaning)."""
    poison_source: Literal["fresh", "pretrain"] = "fresh"
    """fresh: `poisons` pairs of the cleaning set get the trigger and a target caption, the set
    keeps its size (the original code's 100K with 5 or 10 poisons); pretrain: copies of
    pre-training poisons are added to the set."""
    optimizer: Annotated[Literal["fresh", "pretrain"], OmitAtDefault] = "fresh"
    """fresh: a new AdamW. pretrain: the pre-training checkpoint's AdamW state, as the original
    code loads it; PyTorch then also restores that run's weight decay, so `weight_decay` here
    has no effect (docs/FIDELITY.md)."""
    start: StudyOutput | None = None
    """Clean a model another study trained ({ study = "other.toml", node = "select@..." }: a
    select, shrink_perturb, pretrain or clean node) instead of pre-training one here; [model]
    and [pretrain] are then left out, and [attack] and data.train must be that study's."""
