"""The JSON Schema `xspec schema` prints, for editor completion and checking.

It is pydantic's schema of `Spec`, widened to what the loader accepts before validation:
`${VAR}` strings anywhere a value goes, a sweep list or a `{zip = ..., values = [...]}` table
wherever `xspec.spec.sweep` finds an axis (a field that holds one scalar), and `[[variants]]`
tables, each a partial spec merged over the rest. Cross-field rules (an objective that uses a
zero weight, a selection epoch past the last) stay with `xspec validate`.
"""

from __future__ import annotations

import copy
import re
import typing

from pydantic import BaseModel

from xspec.extend.registry import METRICS
from xspec.spec.policies import policy_pattern
from xspec.spec.schema import spec_model
from xspec.spec.sweep import is_model, sweepable, unwrap

DEFS = "#/$defs/"
ENV_STRING = {
    "type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "expanded from the environment: ${VAR}, or ${VAR:-default} when unset",
}
# pydantic validates in lax mode, so a number may be written as a string ("1e-3", " 5 ").
NUMERIC_STRING = {"type": "string", "pattern": r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"}
TAGS = ("kind", "format")  # a union member's tag picks its branch: never a sweep axis


def spec_schema() -> dict:
    """The schema of the spec with every piece registered so far (load plugins first)."""
    spec = spec_model()
    schema = spec.model_json_schema(by_alias=True)
    defs = schema.pop("$defs")
    defs["Spec"] = schema
    for model in _models(spec):
        _widen_model(defs[model.__name__], model)
    _started_elsewhere(schema)
    for name in list(defs):
        defs[f"{name}Override"] = _partial(defs[name])
    top = copy.deepcopy(defs["SpecOverride"])
    top["properties"]["variants"] = {
        "type": "array", "minItems": 1, "items": {"$ref": f"{DEFS}SpecOverride"},
        "description": "[[variants]]: each table overrides the rest of the spec (tables merge "
                       "key by key) and becomes its own set of runs; the merged result must be "
                       "a complete spec",
    }
    defs["SpecWithVariants"] = top
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://xspec.invalid/spec.schema.json",
        "title": "xspec study spec",
        "description": schema.get("description", "A study of backdoors in CLIP models."),
        "if": {"type": "object", "required": ["variants"]},
        "then": {"$ref": f"{DEFS}SpecWithVariants"},
        "else": {"$ref": f"{DEFS}Spec"},
        "$defs": defs,
    }


def _started_elsewhere(spec: dict) -> None:
    """[model] and [pretrain] are required, except where clean.start names another study's
    model: then they must be left out (Spec._started_elsewhere)."""
    spec["required"] = [k for k in spec["required"] if k not in ("model", "pretrain")]
    spec["if"] = {"required": ["clean"], "properties": {"clean": {"required": ["start"]}}}
    spec["then"] = {"not": {"anyOf": [{"required": ["model"]}, {"required": ["pretrain"]}]}}
    spec["else"] = {"required": ["model", "pretrain"]}


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from `root` through its fields, `root` first."""
    found: list[type[BaseModel]] = []

    def visit(annotation) -> None:
        if is_model(annotation):
            if annotation not in found:
                found.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return found


def _widen_model(schema: dict, model: type[BaseModel]) -> None:
    tagged = any(name in TAGS and typing.get_origin(f.annotation) is typing.Literal
                 for name, f in model.model_fields.items())
    for name, field in model.model_fields.items():
        key = field.alias or name
        prop = schema["properties"][key]
        prop = _union_as_any_of(prop)
        if name == "select" and model.__name__ == "Pretrain":
            prop["pattern"] = policy_pattern()
        if name == "metrics" and model.__name__ == "Evaluate":
            prop["items"] = {"enum": METRICS.names()}
        description = _inherited_description(model, name) or _allowed(prop)
        if "description" not in prop and description:
            prop["description"] = description
        leaf = _env(prop)
        axis = sweepable(unwrap(field.annotation)) and not (tagged and name in TAGS)
        schema["properties"][key] = _sweep(leaf, prop) if axis else leaf


def _inherited_description(model: type[BaseModel], name: str) -> str | None:
    """A field a subclass re-declares (Pretrain.lr) keeps its base class's docstring."""
    for base in model.__mro__[1:]:
        field = getattr(base, "model_fields", {}).get(name) if is_model(base) else None
        if field is not None and field.description:
            return field.description
    return None


def _union_as_any_of(prop: dict) -> dict:
    """pydantic writes discriminated unions as oneOf; with ${VAR} tags anyOf is the honest one."""
    prop = dict(prop)
    if "oneOf" in prop:
        prop["anyOf"] = prop.pop("oneOf")
        prop.pop("discriminator", None)
    return prop


def _allowed(prop: dict) -> str | None:
    values = prop.get("enum") or ([prop["const"]] if "const" in prop else None)
    return f"one of: {', '.join(map(str, values))}" if values else None


def _env(schema: dict) -> dict:
    """`schema`, also accepting a `${VAR}` string (and a numeric string for a number) in
    every place a scalar goes."""
    if "$ref" in schema and len(schema) <= 3 and "properties" not in schema:
        return schema
    schema = {k: v for k, v in schema.items() if v is not None}
    for key in ("anyOf", "prefixItems"):
        if key in schema:
            schema[key] = [_env(s) for s in schema[key]]
    if isinstance(schema.get("items"), dict):
        schema["items"] = _env(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _env(schema["additionalProperties"])
    kind = schema.get("type")
    if kind in ("array", "object", "null") or "anyOf" in schema or "$ref" in schema:
        return schema
    if kind == "string" and not {"enum", "const", "pattern"} & set(schema):
        return schema
    meta = {k: schema.pop(k) for k in ("title", "description", "default") if k in schema}
    options = [schema, ENV_STRING] + ([NUMERIC_STRING] if kind in ("integer", "number") else [])
    return {**meta, "anyOf": options}


def _sweep(leaf: dict, prop: dict) -> dict:
    """One value, a sweep list of them, or a zip table that follows another axis."""
    meta = {k: leaf[k] for k in ("title", "description", "default") if k in leaf}
    one = {k: v for k, v in leaf.items() if k not in meta}
    return {**meta, "anyOf": [
        one,
        {"type": "array", "minItems": 1, "items": one,
         "description": "a sweep axis: one set of runs per value"},
        {"type": "object", "additionalProperties": False, "required": ["zip", "values"],
         "description": "a sweep axis that follows another one, value by value",
         "properties": {
             "zip": {"type": "string", "description": "the axis to follow, e.g. \"objective\" "
                                                      "or \"pretrain.objective\""},
             "values": {"type": "array", "minItems": 1, "items": one}}},
    ]}


def _partial(schema: dict) -> dict:
    """The same schema with nothing required and every reference to its own partial form."""
    def walk(node):
        if isinstance(node, dict):
            model = node.get("type") == "object" and "title" in node  # not a zip table
            out = {k: walk(v) for k, v in node.items()
                   if k not in ("default", "if", "then", "else")
                   and not (model and k == "required")}
            if isinstance(out.get("$ref"), str) and out["$ref"].startswith(DEFS):
                out["$ref"] = f"{out['$ref']}Override"
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)
