"""The base every spec table derives from, and the constrained number types they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_serializer


def _not_bool(value):
    """TOML's `true` is not a number (pydantic would read it as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


NotBool = BeforeValidator(_not_bool)
PositiveInt = Annotated[int, Field(gt=0), NotBool]
NonNegativeInt = Annotated[int, Field(ge=0), NotBool]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False), NotBool]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False), NotBool]
Fraction = Annotated[float, Field(ge=0, le=1), NotBool]


class _OmitAtDefault:
    """Field marker: the field enters a node's id only when it differs from its default."""

    def __repr__(self) -> str:
        return "OmitAtDefault"


OmitAtDefault = _OmitAtDefault()
"""`Annotated[T, OmitAtDefault]`: the one rule of what enters an id. Every field of a node's config
is in its id, except a marked one while it holds its default (fields added after ids were in
use, and those that say "off" at their default), so adding such a field keeps existing ids."""


@dataclass(frozen=True)
class Setting:
    """Field marker of a node config: the field holds the spec setting `name` (`"study.seed"`,
    `"data.train"`), a value several nodes of one chain copy. A node's lineage shows a setting
    once, under the most upstream node of its study that holds it (`xspec.compiler.lineage`);
    a downstream copy stays in the config and the id, not in the lineage."""

    name: str


SEED, TRAIN = Setting("study.seed"), Setting("data.train")
EVAL, TEMPLATES, EVALUATION = Setting("data.eval"), Setting("data.templates"), Setting("evaluation")
"""The settings several built-in node kinds copy, named once here."""
Seed = Annotated[NonNegativeInt, SEED]


class _PerMember:
    """Field marker: packed siblings may differ in it (`[run] pack`): it changes how a member
    optimises, never the contents of a batch."""

    def __repr__(self) -> str:
        return "PerMember"


PerMember = _PerMember()


def marked(model: type, marker) -> set[str]:
    """The names of a model's fields that carry `marker`."""
    return {name for name, field in model.model_fields.items()
            if any(m is marker for m in field.metadata)}


class XspecModel(BaseModel):
    # A docstring under a field is its description in `xspec schema` (what an editor shows).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              use_attribute_docstrings=True)

    @model_serializer(mode="wrap")
    def _serialize(self, handler, info):
        """The dump; under `context={"id": True}` without marked fields at their default."""
        data = handler(self)
        if info.context and isinstance(data, dict):
            for name, alias, default in _marked(type(self)):
                if getattr(self, name) == default:
                    data.pop(alias if info.by_alias and alias else name, None)
        return data


_MARKED: dict[type, tuple] = {}


def _marked(model: type) -> tuple:
    """(name, alias, default) of a model's fields marked `OmitAtDefault` (cached per class)."""
    if model not in _MARKED:
        _MARKED[model] = tuple(
            (name, field.alias, field.default) for name, field in model.model_fields.items()
            if any(m is OmitAtDefault for m in field.metadata))
    return _MARKED[model]


def id_dump(config) -> dict:
    """What a node's id is made of: its config's JSON under the `OmitAtDefault` rule (a plain
    dict, the config of a kind registered without a model, as it is)."""
    if isinstance(config, dict):
        return config
    return config.model_dump(mode="json", by_alias=True, context={"id": True})


def full_dump(config) -> dict:
    """A node's config with every field (node.json): a changed default shows here."""
    if isinstance(config, dict):
        return config
    return config.model_dump(mode="json", by_alias=True)


def tagged_union(models: list[type], tag: str) -> Any:
    """One model, or the union of several discriminated by their `tag` field."""
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator=tag)]
