"""Running the cleaning defences a clean node's config turns on, composed: every defence's loss
terms are added, its epoch hooks run in registration order, and each owns its parameter groups.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel

from xspec.extend.registry import DEFENCES, Defence, resolve


@dataclass
class CleaningSetup:
    """What a defence's behaviour gets: the model being cleaned, its training data and optimizer,
    the clean node's config, device, seed, log, and `dep(kind)`: the run folder of the clean
    node's dependency of that kind (e.g. a pseudo_labels node)."""

    model: torch.nn.Module
    data: Any
    optimizer: torch.optim.Optimizer
    config: dict
    device: torch.device
    seed: int
    log: Callable[[str], None] = print
    dep: Callable[[str], Any] | None = None
    start_parameters: Callable[[], dict] | None = None
    """{name: tensor} of the trainable parameters the node started from, also after a resume
    (the model itself then holds the resumed weights)."""

    def param_group(self, owner: str, params, **options) -> None:
        """Replace the parameter group `owner` added before (and its optimizer state) by
        `params`: a per-epoch head, say. The model's own groups are never touched."""
        replace_group(self.optimizer, owner, list(params), **options)


def replace_group(optimizer, owner: str, params: list, **options) -> None:
    for group in [g for g in optimizer.param_groups if g.get("owner") == owner]:
        for param in group["params"]:
            optimizer.state.pop(param, None)
        optimizer.param_groups.remove(group)
    optimizer.add_param_group({"params": params, "owner": owner, **options})


def _typed(defence: Defence, value: Any) -> Any:
    """The field's value as its model, when the field is a table stored as its plain dump."""
    if defence.config is not None:
        return value
    models = [a for a in (typing.get_args(defence.annotation) or (defence.annotation,))
              if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0].model_validate(value) if models and isinstance(value, dict) else value


def active(config: dict) -> list[tuple[Defence, Any]]:
    return [(d, _typed(d, config[d.name])) for d in DEFENCES
            if d.behaviour is not None and d.name in config]


def defences(ctx) -> Callable | None:
    """The builder `fit` calls once the optimizer exists: (terms, on_epoch_start) or None."""
    chosen = active(ctx.config)
    if not chosen:
        return None

    def build(model, data, optimizer, start_parameters=None):
        setup = CleaningSetup(model, data, optimizer, ctx.config, ctx.device,
                              ctx.config["seed"], ctx.log, getattr(ctx, "dep", None),
                              start_parameters)
        terms, hooks = [], []
        for defence, value in chosen:
            pieces = resolve(defence.behaviour)(value, setup)
            terms += pieces.terms
            if pieces.on_epoch_start is not None:
                hooks.append(pieces.on_epoch_start)

        def on_epoch_start(epoch: int) -> None:
            for hook in hooks:
                hook(epoch)

        return terms, on_epoch_start if hooks else None

    return build
