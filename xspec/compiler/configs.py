"""Typed node configs: the resolved config a node kind's stage receives, as a frozen model.

A node kind registered with `config=<model>` has every node's config validated against it when
the plan is compiled (a mismatch is a bug in the compiler or the plugin, reported with the key)
and once more by the node process, which hands the typed object to its stage as `ctx.cfg`
(`xspec.runtime.node`). The spec's own tables are reused, so an allowed value or default is
declared once. Every built-in kind has one.

Data sources (`train`, `data.from`, `eval.source`, `classes`) and the attack stay their plain
dumps here: plugins add formats and attacks after this module is imported, and the runtime parses
them with the registry's current models (`open_pairs`, `make_attack`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from xspec.errors import CompileError
from xspec.spec.base import NonNegativeInt, XspecModel
from xspec.extend.registry import defences_of
from xspec.spec.schema import (
    Clean, CleanData, DeepCluster, Metric, ShrinkPerturb, Templates, Training,
)


class EvalConfig(XspecModel):
    source: dict[str, Any]
    templates: Templates
    metrics: list[Metric]
    folder_labels: Literal["by_name"] | None = None
    """Set for ImageFolder evaluation sets (labels from folder names): only in the id."""
    primary: str = "eval"
    """The primary set's name in the results (`evaluate.primary`)."""
    sets: dict[str, dict[str, Any]] = {}
    """More zero-shot sets (`xspec.compiler.evalsets`): source, subset, templates, probe."""
    retrieval: dict[str, dict[str, Any]] = {}
    """Image-caption retrieval sets: their sources."""


class Shared(XspecModel):
    """What every node that evaluates carries: the attack (its table), evaluation and seed."""

    attack: dict[str, Any]
    eval: EvalConfig
    seed: NonNegativeInt
    plugins: dict[str, str] = {}


class SelectConfig(XspecModel):
    policy: str
    """The policy's name, or its whole text when it takes no objective (`epoch(5)`)."""
    reference: str | None = None
    """The objective of the run whose accuracy `match_accuracy`-like policies compare with."""
    plugins: dict[str, str] = {}
    """{"policy:<name>": version} when the policy declares a version."""


class ShrinkPerturbConfig(ShrinkPerturb, Shared):
    pass


class PoisonConfig(XspecModel):
    """The attack's own fields (`kind`, `target`, ...) at the top, then the training pairs."""

    model_config = ConfigDict(extra="allow")
    kind: str
    train: dict[str, Any]
    seed: NonNegativeInt
    plugins: dict[str, str] = {}

    @property
    def attack(self) -> dict[str, Any]:
        return {"kind": self.kind, **(self.model_extra or {})}


class ModelConfig(XspecModel):
    arch: str
    init: str | dict[str, Any] = "scratch"
    """"scratch", a weights file's fingerprint ({path, bytes, mtime_ns}) or {"input": kind}."""
    arch_sha256: str | None = None


class TrainingConfig(Training, Shared):
    """A training run's fields as `[pretrain]`/`[clean]` declare them; every field is in the
    config except the fidelity options, left out at their defaults (so ids stayed)."""

    save_optimizer: bool = False
    """Keep each epoch's AdamW state: set on a pre-training run a cleaning run continues."""

    @property
    def weights(self) -> dict[str, float]:
        return {"mmcl": self.mmcl_weight, "ssl": self.ssl_weight}

    @property
    def continues_optimizer(self) -> bool:
        """Start from the AdamW state of the pre-training run (clean.optimizer = "pretrain")."""
        return False


class PretrainConfig(TrainingConfig):
    """`[pretrain]`'s fields, and one entry per `[pretrain]` defence that is on (RoCLIP, ...)."""

    model_config = ConfigDict(extra="allow")
    model: ModelConfig
    train: dict[str, Any]

    @model_validator(mode="after")
    def _extras_are_defences(self):
        unknown = sorted(set(self.model_extra or {}) - {d.name for d in defences_of("pretrain")})
        if unknown:
            raise ValueError(f"{unknown[0]}: not a field of a pretrain node, nor a registered "
                             "pre-training defence")
        return self


class CleanDataConfig(CleanData):
    source: Annotated[dict[str, Any], Field(alias="from")]
    """The pool the cleaning set is drawn from ("train" resolved to the training pairs)."""


class DeepClusterConfig(DeepCluster):
    """`clean.deep_cluster` as a clean node's config holds it: labels "kmeans", a labels CSV's
    fingerprint ({path, bytes, mtime_ns}) or {"input": "pseudo_labels"}."""

    labels: str | dict[str, Any] = DeepCluster.model_fields["labels"].default


class CleanConfig(Clean, TrainingConfig):
    """`[clean]`'s fields (its ablation fields left out at their defaults), and one entry per
    registered defence that is on, typed by `xspec.runtime.defences` with its own model."""

    model_config = ConfigDict(extra="allow")
    data: CleanDataConfig
    deep_cluster: DeepClusterConfig | None = None

    @property
    def continues_optimizer(self) -> bool:
        return self.optimizer == "pretrain"

    @model_validator(mode="after")
    def _extras_are_defences(self):
        unknown = sorted(set(self.model_extra or {}) - {d.name for d in defences_of("clean")})
        if unknown:
            raise ValueError(f"{unknown[0]}: not a field of a clean node, nor a registered "
                             "defence")
        return self


class PseudoLabelsConfig(XspecModel):
    data: CleanDataConfig
    classes: dict[str, Any]
    """The evaluation source whose classes the labels are over."""
    templates: Templates
    seed: NonNegativeInt
    input: str
    """The kind of the dependency whose checkpoint labels (another study's node)."""


def typed(model: type[XspecModel], config: dict, where: str) -> XspecModel:
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise CompileError(f"{where}: config.{key}: {error['msg']} (node config and its "
                           f"model {model.__name__} disagree)") from None
