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

from xspec.errors import XspecError
from xspec.extend.pieces import HOOKS, Pieces
from xspec.extend.registry import DEFENCES, Defence, resolve


@dataclass
class CleaningSetup:
    """What a defence's behaviour gets: the model being trained, its training data and
    optimizer, the node's config, device, seed, log, and `dep(kind)`: the run folder of the
    node's dependency of that kind (e.g. a pseudo_labels node)."""

    model: torch.nn.Module
    data: Any
    optimizer: torch.optim.Optimizer
    config: Any
    """The node's typed config (`ctx.cfg`: the clean node's `CleanConfig`, a pretrain node's
    `PretrainConfig`, from `xspec.compiler.configs`): read attributes, `setup.config.lr`. The
    defence's own value is `build`'s first argument. `config["lr"]` and `config.get(...)`
    still read the JSON value, for defences written when this was a dict (deprecated)."""
    device: torch.device
    seed: int
    log: Callable[[str], None] = print
    dep: Callable[[str], Any] | None = None
    start_parameters: Callable[[], dict] | None = None
    """{name: tensor} of the trainable parameters the node started from, also after a resume
    (the model itself then holds the resumed weights)."""
    checkpoints: Any = None
    """The node's checkpoint folder (a Path), where a defence keeps what it carries from epoch
    to epoch (`xspec.runtime.defence_state.EpochState`) so that a resumed run continues with it."""

    def clean_batches(self, epoch: int = 0):
        """The cleaning pairs once over, in batches as training gets them (the order of
        `epoch`; 0, the default, is an order no training epoch uses; the remainder of fewer than
        a batch is left out, as in training): {"index": pair indices, "image": [B, 3, H, W]
        normalised on the device, "text": token ids, "caption": the B captions (poisoned ones
        already replaced), "poisoned": [B] bool}, plus any augmented views the objective uses.
        Call it under `torch.no_grad()` with the model in eval mode to measure activations."""
        for batch in self.data.batches(epoch):
            rows = batch["index"].tolist()
            yield {**batch, "caption": [self.data.captions[i] for i in rows],
                   "poisoned": torch.as_tensor(self.data.poisoned[rows])}

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


def active(config) -> list[tuple[Defence, Any]]:
    """The defences a clean config turns on, with their values: those off their default. The
    config is a clean node's typed config or its JSON (full, or as its id holds it)."""
    values = config if isinstance(config, dict) else {
        d.name: getattr(config, d.name, d.default) for d in DEFENCES}
    return [(d, _typed(d, values[d.name])) for d in DEFENCES
            if d.behaviour is not None and d.name in values and values[d.name] != d.default]


def _each(chosen: list, key: str) -> Callable[[int], None] | None:
    """One hook calling every defence's `key` hook in turn (registration order), or None."""
    hooks = [getattr(pieces, key) for _, pieces in chosen if getattr(pieces, key) is not None]
    if not hooks:
        return None

    def call(number: int) -> None:
        for hook in hooks:
            hook(number)

    return call


def _one(chosen: list, key: str) -> Any:
    """The one defence's `key` piece; two defences giving one is an error naming both."""
    given = [(name, getattr(pieces, key)) for name, pieces in chosen
             if getattr(pieces, key) is not None]
    if len(given) > 1:
        raise DefenceConflict(f"clean.{given[0][0]} and clean.{given[1][0]} both replace the "
                              f"cleaning {key}; turn one of them off")
    return given[0][1] if given else None


class DefenceConflict(XspecError):
    pass


def defence_views(config) -> set[str]:
    """Feature views the node's defences read beyond its objective's."""
    return {v for d, value in active(config) for v in d.needed_views(value)}


def defences(ctx) -> Callable | None:
    """The builder `fit` calls once the optimizer exists: the active defences' `Pieces`
    together, or None."""
    config = ctx.cfg
    chosen = active(config)
    if not chosen:
        return None

    def build(model, data, optimizer, start_parameters=None) -> Pieces:
        run = getattr(ctx, "run", None)
        setup = CleaningSetup(model, data, optimizer, config, ctx.device,
                              config.seed, ctx.log, getattr(ctx, "dep", None),
                              start_parameters, getattr(run, "checkpoints", None))
        built = [(defence.name, resolve(defence.behaviour)(value, setup))
                 for defence, value in chosen]
        # The active defences together are one set of pieces: every loss term, each hook
        # calling every defence's in turn, and at most one transform, objective and batch source.
        return Pieces(terms=[t for _, p in built for t in p.terms],
                      transform=_one(built, "transform"), loss=_one(built, "loss"),
                      batches=_one(built, "batches"),
                      **{hook: _each(built, hook) for hook in HOOKS})

    return build
