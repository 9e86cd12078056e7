"""`[model]`, and `StudyOutput`: an output of another study named in a spec."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from xspec.spec.archs import check_arch
from xspec.spec.base import XspecModel


class StudyOutput(XspecModel):
    """An output of another study, e.g. `{ study = "clip.toml", node = "select" }`: that study's
    node and what it needs are part of this plan and run first, in the same workspace."""

    study: Annotated[str, Field(min_length=1)]
    """The other study's spec file, relative to this spec."""
    node: Annotated[str, Field(min_length=1)] = "select"
    """A node kind of that study (select, pretrain, ...), or a node's name as `xspec plan`
    shows it (select@objective=mmcl)."""
    where: dict[str, str | int | float] = {}
    """Which node of that kind: settings it must have, by short name or dotted key
    ({ objective = "mmcl+ssl", poisons = 3000 }); one node must match."""


class Model(XspecModel):
    arch: Annotated[str, Field(min_length=1)]
    """An open_clip model config name (RN50, ViT-B-32, ...) or one xspec ships (xspec-vit-tiny)."""
    init: str | StudyOutput = "scratch"
    """"scratch", a checkpoint file to start pre-training from (relative to the spec), or
    another study's checkpoint: { study = "other.toml", node = "select" }."""

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        return check_arch(value)
