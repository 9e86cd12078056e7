"""Evaluation sets beside the primary one: `[evaluate.sets.<name>]` (zero-shot classification,
optionally on a class subset, optionally with a linear probe) and `[evaluate.retrieval.<name>]`
(image-caption retrieval).

The primary set is `data.eval`; `evaluate.primary` is its name in the results (default "eval").
Selection policies, shrink-and-perturb and the paper's tables read the primary set; the other
sets are measured at the same moments and reported beside it (docs/EVALUATION.md).

Sources are typed with the data formats registered when the spec model is built, so a plugin's
evaluation format is a valid set source; the models here are rebuilt with them by
`xspec.spec.schema.spec_model` (`models_for`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, create_model, field_validator

from xspec.spec.base import NonNegativeFloat, PositiveFloat, PositiveInt, XspecModel

SetName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=40)]
SUBSETS = ("imagenet-r", "imagenet-a")


class Probe(XspecModel):
    """A linear probe, as CleanCLIP reports one (src/evaluate.py:166): logistic regression on
    the frozen image features of `train`, scored on the set's own images. Measured for the
    starting model and each run's final model (not every epoch), cached per model."""

    train: Any
    """A labelled source with the set's classes (any evaluation format): the probe's training
    split."""
    epochs: PositiveInt = 32
    """CleanCLIP's --linear_probe_num_epochs default (src/parser.py:27)."""
    batch_size: PositiveInt = 128
    """CleanCLIP trains the probe at --batch_size (default 128, src/parser.py:45)."""
    lr: PositiveFloat = 0.005
    """Peak learning rate, cosine to 0 without warm-up (src/evaluate.py:232)."""
    weight_decay: NonNegativeFloat = 0.01
    """AdamW weight decay on the weights, none on the bias (src/evaluate.py:231)."""


class ZeroShotSet(XspecModel):
    """Another zero-shot classification set: top-1, top-5 and ASR, as on the primary set."""

    source: Any
    """Any evaluation source (imagefolder, labels_csv, fashion_mnist, or a plugin's format)."""
    subset: str | list[Annotated[str, Field(min_length=1)]] | None = None
    """Score over these classes only (the logits restricted to them, as the standard ImageNet-R
    and ImageNet-A evaluations do): "imagenet-r" or "imagenet-a" (their 200 ImageNet classes,
    from the datasets' own repositories), a file of class names or WordNet ids (one a line), or
    a list of them. Images of other classes are left out."""
    templates: str = "clip80"
    """"clip80" (the 80 CLIP ImageNet templates) or a text file of templates, one a line, with
    {} where the class name goes."""
    probe: Probe | None = None

    @field_validator("subset")
    @classmethod
    def _subset_not_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("give at least one class, or leave subset out")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("a class is listed twice")
        return value


class RetrievalSet(XspecModel):
    """Image-caption retrieval: image->text and text->image recall@1/5/10 over the set's pairs
    (captions of one image file count as that image's), and, with an attack, how often a
    triggered image retrieves captions naming the target."""

    source: Any
    """Image-caption pairs: csv, webdataset, fashion_mnist (its web-style captions), or a
    plugin's pair format."""


def models_for(eval_source: Any, pair_source: Any) -> tuple[type, type]:
    """(ZeroShotSet, RetrievalSet) with their sources typed by the given unions."""
    probe = create_model("Probe", __base__=Probe, __doc__=Probe.__doc__,
                         train=(eval_source, ...))
    zero_shot = create_model("ZeroShotSet", __base__=ZeroShotSet, __doc__=ZeroShotSet.__doc__,
                             source=(eval_source, ...), probe=(probe | None, None))
    retrieval = create_model("RetrievalSet", __base__=RetrievalSet,
                             __doc__=RetrievalSet.__doc__, source=(pair_source, ...))
    return zero_shot, retrieval


def evaluate_fields(eval_source: Any, pair_source: Any) -> dict[str, Any]:
    """The `[evaluate]` fields this module adds, for `create_model`."""
    zero_shot, retrieval = models_for(eval_source, pair_source)
    return {"sets": (dict[SetName, zero_shot], {}), "retrieval": (dict[SetName, retrieval], {})}


def check_names(primary: str, sets: dict, retrieval: dict) -> None:
    """Every set's name is unique: it keys the set's rows in the results."""
    clash = sorted(({primary} & (set(sets) | set(retrieval))) | (set(sets) & set(retrieval)))
    if clash:
        raise ValueError(f"set name '{clash[0]}' is used twice (evaluate.primary = "
                         f"'{primary}' names data.eval); give each set its own name")
