"""Sweep axes: a list where the schema expects one value, or `{zip = "axis", values = [...]}`.

Axes are found by walking the raw TOML dict beside the pydantic schema, so the schema itself
stays free of sweep types. Axes multiply in declaration order; a zip axis joins its leader.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from xspec.errors import SpecError

MAX_POINTS = int(os.environ.get("XSPEC_MAX_SWEEP", 100_000))  # variants of one spec


@dataclass(frozen=True)
class Axis:
    path: tuple[str, ...]
    values: tuple[Any, ...]
    leader: tuple[str, ...] | None = None
    written: tuple[Any, ...] = ()  # as written in the spec, duplicates included

    @property
    def dropped(self) -> tuple[Any, ...]:
        return tuple(v for i, v in enumerate(self.written) if v in self.written[:i])

    @property
    def name(self) -> str:
        return ".".join(self.path)


def unwrap(annotation) -> list:
    """The member types of an annotation, looking through Annotated, Optional and Union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in unwrap(arg)]
    return [annotation]


def is_model(member) -> bool:
    return isinstance(member, type) and issubclass(member, BaseModel)


def branch(members: list, value: dict) -> type[BaseModel] | None:
    """The model of a (possibly discriminated) union that a raw dict selects."""
    models = [m for m in members if is_model(m)]
    if len(models) == 1:
        return models[0]
    for model in models:
        for name, field in model.model_fields.items():
            if typing.get_origin(field.annotation) is typing.Literal and name in value:
                if value[name] in typing.get_args(field.annotation):
                    return model
    return None


def sweepable(members: list) -> bool:
    """A field takes a sweep when it holds one scalar, or a scalar or a table (model.init:
    a path or another study's output); never when a list is one of its values."""
    containers = (list, tuple, dict, set)
    if any(m in containers or typing.get_origin(m) in containers for m in members):
        return False
    return any(not is_model(m) and m is not type(None) for m in members)


def find_axes(raw: dict, model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[Axis]:
    axes: list[Axis] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in raw:
            continue
        value, path, members = raw[key], prefix + (key,), unwrap(field.annotation)
        if isinstance(value, dict) and "zip" not in value:
            sub = branch(members, value)
            if sub is not None:
                axes += find_axes(value, sub, path)
        elif sweepable(members) and isinstance(value, list):
            axes.append(_axis(path, value))
        elif sweepable(members) and isinstance(value, dict):
            axes.append(_zip_axis(path, value))
    return axes


def _axis(path: tuple[str, ...], values: list) -> Axis:
    if not values:
        raise SpecError(f"{'.'.join(path)}: empty sweep; give at least one value")
    try:
        kept = list(dict.fromkeys(values))
    except TypeError:  # unhashable values (lists): the quadratic way
        kept = []
        for v in values:
            if v not in kept:
                kept.append(v)
    return Axis(path, tuple(kept), written=tuple(values))


def _zip_axis(path: tuple[str, ...], value: dict) -> Axis:
    name = ".".join(path)
    if set(value) != {"zip", "values"} or not isinstance(value["values"], list):
        raise SpecError(
            f"{name}: a zipped sweep is {{zip = \"<axis>\", values = [...]}}; got keys "
            f"{', '.join(sorted(value))}"
        )
    if not value["values"]:
        raise SpecError(f"{name}: empty sweep; give at least one value")
    leader = str(value["zip"])
    values = tuple(value["values"])
    return Axis(path, values, leader=tuple(leader.split(".")), written=values)


def _resolve_leaders(axes: list[Axis]) -> list[Axis]:
    by_path = {a.path: a for a in axes if a.leader is None}
    resolved = []
    for axis in axes:
        if axis.leader is None:
            resolved.append(axis)
            continue
        sibling = axis.path[:-1] + axis.leader
        leader = by_path.get(sibling) or by_path.get(axis.leader)
        if leader is None:
            known = ", ".join(a.name for a in by_path.values()) or "none"
            raise SpecError(
                f"{axis.name}: zip = '{'.'.join(axis.leader)}' names no sweep axis; axes: {known}"
            )
        if len(leader.written) != len(axis.values):
            raise SpecError(
                f"{axis.name}: {len(axis.values)} values cannot zip with {leader.name}, "
                f"which has {len(leader.written)}"
            )
        resolved.append(Axis(axis.path, axis.values, leader.path, axis.values))
    return resolved


def check_size(leaders: list[Axis], before: int = 0) -> None:
    """Refuse, before expanding, a sweep of more than MAX_POINTS variants (`before`: those of
    earlier [[variants]] tables), naming its axes and their sizes."""
    points = math.prod(len(a.values) for a in leaders)
    if before + points > MAX_POINTS:
        sizes = " x ".join(f"{a.name} ({len(a.values):,})" for a in leaders)
        earlier = f" plus {before:,} of earlier [[variants]]" if before else ""
        raise SpecError(f"sweep of {points:,} points{earlier}: {sizes}; at most {MAX_POINTS:,} "
                        "points (XSPEC_MAX_SWEEP raises the cap); sweep fewer values")


def expand(raw: dict, model: type[BaseModel],
           before: int = 0) -> tuple[list[Axis], list[tuple[dict, dict]]]:
    """All variants of a raw spec: (raw dict with one value per axis, {axis path: index})."""
    axes = _resolve_leaders(find_axes(raw, model))
    leaders = [a for a in axes if a.leader is None]
    check_size(leaders, before)
    followers = {a.path: [f for f in axes if f.leader == a.path] for a in leaders}
    # Copy the spec without its axes' value lists once: a copy per variant that carried them
    # would make a sweep of n values cost n^2.
    template = copy.deepcopy(_without(raw, axes))
    written = {a.path: _first_positions(a) for a in leaders}
    variants = []
    for combo in itertools.product(*(range(len(a.values)) for a in leaders)):
        variant, chosen = copy.deepcopy(template), {}
        for axis, index in zip(leaders, combo):
            _set(variant, axis.path, axis.values[index])
            original = written[axis.path][index]
            chosen[axis.path] = original
            for follower in followers[axis.path]:
                _set(variant, follower.path, follower.values[original])
                chosen[follower.path] = original
        variants.append((variant, chosen))
    return axes, variants


def _without(raw: dict, axes: list[Axis]) -> dict:
    """`raw` with every axis's value replaced by None (shallow copies along the paths)."""
    out = dict(raw)
    for axis in axes:
        node = out
        for key in axis.path[:-1]:
            node[key] = copy.copy(node[key])
            node = node[key]
        node[axis.path[-1]] = None
    return out


def _first_positions(axis: Axis) -> list[int]:
    """For each distinct value, the index of its first occurrence as written."""
    try:
        first: dict = {}
        for i, value in enumerate(axis.written):
            first.setdefault(value, i)
        return [first[value] for value in axis.values]
    except TypeError:  # unhashable values (lists): the quadratic way
        return [axis.written.index(value) for value in axis.values]


def _set(raw: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        raw = raw[key]
    raw[path[-1]] = value
