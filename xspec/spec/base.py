"""The base every spec table derives from, and the constrained number types they share."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


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


class XspecModel(BaseModel):
    # A docstring under a field is its description in `xspec schema` (what an editor shows).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              use_attribute_docstrings=True)


def tagged_union(models: list[type], tag: str) -> Any:
    """One model, or the union of several discriminated by their `tag` field."""
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator=tag)]
