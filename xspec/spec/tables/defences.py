"""The built-in cleaning defences: `[clean.deep_cluster]` and `[clean.shrink_perturb]`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from xspec.extend.registry import register_defence
from xspec.spec.base import Fraction, NonNegativeFloat, NotBool, PositiveFloat, PositiveInt, XspecModel
from xspec.spec.tables.model import StudyOutput


def _deep_cluster_config(value: dict, fingerprint) -> dict:
    if isinstance(value["labels"], str) and value["labels"] != "kmeans":
        value = {**value, "labels": fingerprint(value["labels"], "clean.deep_cluster.labels")}
    return value


class DeepCluster(XspecModel):
    """Paper section 5: each epoch, spherical k-means on the cleaning set's image embeddings
    (or labels from a CSV of `index,label` made by a stronger model), a fresh linear head on
    the image features, and cross-entropy on the pseudo-labels with `weight`."""

    k: PositiveInt = 1000
    weight: PositiveFloat = 1.0
    labels: str | StudyOutput = "kmeans"
    """"kmeans"; a CSV of index,label for the cleaning pool; or a stronger model from another
    study ({ study = "other.toml", node = "select" }), whose zero-shot predictions over the
    evaluation classes a pseudo_labels node writes."""
    iterations: PositiveInt = 20
    assign: Literal["epoch", "online"] = "epoch"
    """k-means labels: each image's cluster from the epoch-start embedding (Caron et al.), or,
    as the original code does, the nearest epoch-start centroid of the batch's current
    embedding, recomputed at every step."""
    head_reset: Literal["new_labels", "every_epoch"] = "new_labels"
    """Re-initialise the linear head whenever labels are recomputed (the paper's text; with
    labels from a file: once, as the original code does), or at every epoch regardless."""


register_defence("deep_cluster", "xspec.runtime.ablations:deep_cluster",
                 annotation=DeepCluster | None, default=None, config=_deep_cluster_config,
                 origin="xspec.spec.schema")


class ShrinkPerturb(XspecModel):
    """theta <- shrink * theta + perturb * eps for every (shrink, perturb) candidate; cleaning
    starts from the most accurate candidate whose ASR is at most `asr_threshold`."""

    shrink: list[Annotated[float, Field(gt=0, le=1), NotBool]]
    perturb: list[NonNegativeFloat]
    noise: Literal["gaussian", "init"] = "gaussian"
    asr_threshold: Fraction = 0.05

    @field_validator("shrink", "perturb")
    @classmethod
    def _not_empty(cls, values: list[float]) -> list[float]:
        if not values:
            raise ValueError("give at least one value")
        return values


register_defence("shrink_perturb", None, annotation=ShrinkPerturb | None, default=None,
                 start="xspec.compiler.kinds:shrink_perturb_node", origin="xspec.spec.schema")
