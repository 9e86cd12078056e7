"""Typed node configs: the resolved config a node kind's stage receives, as a frozen model.

A node kind registered with `config=<model>` has every node's config validated against it when
the plan is compiled (a mismatch is a bug in the compiler or the plugin, reported with the key)
and once more by the node process, which hands the typed object to its stage as `ctx.cfg`
(`xspec.runtime.node`). The spec's own tables are reused, so an allowed value or default is
declared once. Built-in kinds with a model: select and shrink_perturb.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from xspec.errors import CompileError
from xspec.spec.base import NonNegativeInt, XspecModel
from xspec.spec.schema import ShrinkPerturb


class EvalConfig(XspecModel):
    source: dict[str, Any]
    templates: str
    metrics: list[str]


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


class ShrinkPerturbConfig(ShrinkPerturb, Shared):
    pass


def typed(model: type[XspecModel], config: dict, where: str) -> XspecModel:
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise CompileError(f"{where}: config.{key}: {error['msg']} (node config and its "
                           f"model {model.__name__} disagree)") from None
