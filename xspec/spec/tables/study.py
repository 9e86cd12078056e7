"""`[study]`: the study's name, seed and plugins."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from xspec.spec.base import NonNegativeInt, XspecModel

MAX_SEED = 2**64 - 1


class Study(XspecModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    """The study's name: its report folder and its rows in the database."""
    seed: NonNegativeInt = 0
    """Every random choice of every run derives from it."""
    notes: str = ""
    plugins: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]] = []
    """Modules that register attacks, defences, ... (docs/EXTENDING.md): `name.py` or `name/`
    beside the spec, else a module on sys.path. Never part of a node's id (their pieces are)."""

    @field_validator("seed")
    @classmethod
    def _fits_64_bits(cls, value: int) -> int:
        if value > MAX_SEED:
            raise ValueError(f"must fit in 64 bits (at most 2**64 - 1 = {MAX_SEED}), got {value}")
        return value

    @field_validator("name")
    @classmethod
    def _not_a_report_file(cls, value: str) -> str:
        if value.lower().endswith(".html") or value.lower().startswith("compare-"):
            raise ValueError(f"'{value}' would collide with the report index or comparison "
                             "folders under reports/; choose a name not ending in .html nor "
                             "starting with compare-")
        return value
