"""Reading a spec file: TOML, `${VAR}` expansion, sweep expansion, validation, clean errors."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xspec.errors import SpecError
from xspec.extend.files import SPEC_DIR
from xspec.spec.classes import class_names, examples
from xspec.spec.cluster import unsafe_options
from xspec.spec.wording import describe
from xspec.spec.evalsets import SUBSETS
from xspec.textfiles import decode_utf8, read_regular
from xspec.spec.schema import Spec, spec_model
from xspec.spec.sweep import Axis, branch, expand, unwrap

MAX_PROBLEMS = 10
MAX_SPEC_BYTES = 4 * 2**20  # a 10,000-point sweep written out takes 0.1 MB
MAX_DEPTH = 32  # tables and arrays inside each other; xspec's schema needs 4
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys holding a file path, with the keyword that means "no file" (resolved against the spec).
PATH_KEYS = {"path": None, "init": "scratch", "labels": "kmeans", "study": None,
             "templates": "clip80", "surrogate": None}


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    raw: dict
    axes: list[Axis]
    variants: list[tuple[Spec, dict[tuple[str, ...], int]]]
    plugins: tuple[dict, ...] = ()  # [study] plugins as loaded: {"name", "path"}

    @property
    def study(self) -> str:
        return self.variants[0][0].study.name

    @property
    def first(self) -> Spec:
        return self.variants[0][0]


def load_spec(path: str | Path) -> LoadedSpec:
    path = Path(path)
    try:
        data = read_regular(path, SpecError, MAX_SPEC_BYTES)
    except SpecError as exc:
        raise SpecError(f"cannot read spec {exc}") from None
    text = decode_utf8(data, str(path), SpecError)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested deeper than Python can parse; a spec nests tables "
                        f"and arrays at most {MAX_DEPTH} levels") from None
    _check_depth(path, raw)
    base = path.parent.resolve()
    token = SPEC_DIR.set(base)  # FileInput fields resolve against the spec's folder
    try:
        return _load(path, raw, base)
    finally:
        SPEC_DIR.reset(token)


def _load(path: Path, raw: dict, base: Path) -> LoadedSpec:
    plugins = _load_plugins(path, raw, base)
    model = spec_model()
    all_axes, specs = [], []
    for where, part in _variants(raw):
        try:
            part = _expand_env(part, (), base)
            axes, variants = expand(part, model, before=len(specs))
        except SpecError as exc:
            raise SpecError(f"{path}: {where}{exc}") from None
        all_axes += axes
        specs += _validate(path, variants, where, model)
    _check_targets(path, specs)
    _check_files(path, specs)
    _check_cluster(path, specs)
    return LoadedSpec(path, raw, all_axes, specs, tuple(plugins))


def _load_plugins(path: Path, raw: dict, base: Path) -> list[dict]:
    """Import the modules `[study] plugins` names (in every variant), before validation: their
    attacks, defences and data formats are part of the spec's schema."""
    from xspec.extend.plugins import load_plugins

    names: list[str] = []
    tables = [raw] + [v for v in raw.get("variants", []) if isinstance(v, dict)]
    for table in tables:
        listed = (table.get("study") or {}).get("plugins", []) if isinstance(
            table.get("study"), dict) else []
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            raise SpecError(f"{path}: study.plugins: expected a list of module names, "
                            f"got {listed!r}")
        names += [n for n in listed if n not in names]
    try:
        return load_plugins(names, base)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def _variants(raw: dict) -> list[tuple[str, dict]]:
    """`[[variants]]` tables each override the rest of the spec; without them, one variant.

    They express what a product cannot: e.g. a learning-rate grid per dataset and objective.
    """
    variants = raw.get("variants")
    if variants is None:
        return [("", raw)]
    if not isinstance(variants, list) or not variants or not all(
            isinstance(v, dict) for v in variants):
        raise SpecError("variants: must be a non-empty array of tables ([[variants]])")
    base = {k: v for k, v in raw.items() if k != "variants"}
    return [(f"variants[{i}]: ", _merge(base, v)) for i, v in enumerate(variants)]


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "zip" not in value:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _expand_env(value: Any, keys: tuple, base: Path) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, keys + (k,), base) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, keys + (i,), base) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    value = expand_vars(value, keys)
    key = next((k for k in reversed(keys) if isinstance(k, str)), None)  # a sweep's list items
    is_path = (key in PATH_KEYS and value != PATH_KEYS[key]
               or key == "arch" and value.endswith(".json")
               or keys[-1:] == ("subset",) and value not in SUBSETS)  # a file, not a list item
    if is_path and not os.path.isabs(value):
        value = str(base / value)
    return value


def expand_vars(text: str, keys: tuple = ()) -> str:
    """`${VAR}` and `${VAR:-default}` replaced, where a default may itself hold `${...}`
    (`${A:-${B}}`); anything else is kept as written."""
    out, i = [], 0
    while (start := text.find("${", i)) >= 0:
        out.append(text[i:start])
        name = ENV_NAME.match(text, start + 2)
        end = _closing(text, name.end()) if name else -1
        if end < 0 or text[name.end()] not in "}:" or (
                text[name.end()] == ":" and not text.startswith(":-", name.end())):
            out.append("${")
            i = start + 2
            continue
        if name.group() in os.environ:
            out.append(os.environ[name.group()])
        elif text[name.end()] == ":":
            out.append(expand_vars(text[name.end() + 2:end], keys))
        else:
            raise SpecError(f"{_dotted(keys)}: environment variable {name.group()} is not set")
        i = end + 1
    return "".join(out) + text[i:]


def _closing(text: str, i: int) -> int:
    """The index of the `}` closing a `${` whose name ends before `i`; -1 if none."""
    depth = 1
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _check_depth(path: Path, raw: dict) -> None:
    stack = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"{path}: tables and arrays nested more than {MAX_DEPTH} levels "
                            "deep; a spec needs a few")
        children = value.values() if isinstance(value, dict) else value
        stack += [(v, depth + 1) for v in children if isinstance(v, (dict, list))]


def _dotted(loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


UNION_TAGS = {"int", "float", "str", "bool", "list", "tuple", "dict", "none", "constrained-int",
              "constrained-float", "constrained-str", "is-instance", "model"}


def _clean_loc(raw: dict, loc: tuple) -> tuple:
    """Drop the union tags pydantic puts in error locations (attack.badnet.target -> attack.target)."""
    out, node = [], raw
    for part in loc:
        if isinstance(node, dict) and part not in node and part in (
            node.get("kind"), node.get("format"), "str", "literal['train']"
        ):
            continue
        if isinstance(part, str) and (
                part.startswith(("function-", "literal[", "tagged-union"))
                or (node is not None and not isinstance(node, dict))  # a tag under a value
                or (isinstance(node, dict) and part not in node
                    and ("[" in part or part in UNION_TAGS or part[:1].isupper()))):
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node)
            else None
        )
    return tuple(out)


def _allowed_keys(raw: dict, loc: tuple, model) -> str:
    """'; allowed: a, b' for the table that holds an unknown key."""
    node = raw
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        node = node.get(part) if isinstance(node, dict) else None
        model = branch(unwrap(field.annotation), node or {}) if field else None
        if model is None:
            return ""
    return "; allowed: " + ", ".join(sorted(f.alias or n for n, f in model.model_fields.items()))


def _validate(path: Path, variants: list[tuple[dict, dict]], where: str = "", model=None):
    model = model or spec_model()
    specs, problems = [], []
    for raw, chosen in variants:
        try:
            specs.append((model.model_validate(raw), chosen))
        except ValidationError as exc:
            for error in exc.errors():
                loc = _clean_loc(raw, error["loc"])
                message = describe(error)
                if error["type"] == "extra_forbidden":
                    message += _allowed_keys(raw, loc, model)
                for axis_path, index in chosen.items():
                    if loc[: len(axis_path)] == axis_path:
                        loc = axis_path + (index,) + loc[len(axis_path):]
                line = f"{path}: {where}{_dotted(loc) or '(top level)'}: {message}"
                if line not in problems:
                    problems.append(line)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"… and {len(problems) - MAX_PROBLEMS} more")
        raise SpecError("\n".join(shown))
    return specs


def _check_targets(path: Path, specs) -> None:
    for spec, _ in specs:
        if getattr(spec.attack, "target", None) is None:
            continue
        classes = class_names(spec.data.eval)
        if classes is not None and spec.attack.target not in classes:
            source = "fashion_mnist" if spec.data.eval.format == "fashion_mnist" else \
                spec.data.eval.classes
            raise SpecError(
                f"{path}: attack.target: {spec.attack.target!r} is not a class of the evaluation "
                f"set ({examples(source, classes)})"
            )


def _check_cluster(path: Path, specs) -> None:
    """Cluster strings that would leave their #SBATCH line (`xspec.spec.cluster`)."""
    for spec, _ in specs:
        cluster = spec.cluster.model_dump(exclude_none=True) if spec.cluster else {}
        tables = [("", {k: v for k, v in cluster.items() if not isinstance(v, dict)
                        or k == "additional"})]
        tables += [(f"{k}.", v) for k, v in cluster.items()
                   if isinstance(v, dict) and k != "additional"]
        for prefix, table in tables:
            problems = unsafe_options(table, f"cluster.{prefix}")
            if problems:
                raise SpecError(f"{path}: {problems[0]}")


def _check_files(path: Path, specs) -> None:
    """Files that must be files: a directory there can only fail later, in a job."""
    for spec, _ in specs:
        init = spec.model.init if spec.model else "scratch"
        files = {"model.init": init if init != "scratch" else None,
                 "data.train.path": spec.data.train.path if spec.data.train.format == "csv"
                 else None,
                 "data.eval.path": spec.data.eval.path if spec.data.eval.format == "labels_csv"
                 else None}
        cluster = spec.clean.deep_cluster if spec.clean is not None else None
        if cluster is not None and cluster.labels != "kmeans":
            files["clean.deep_cluster.labels"] = cluster.labels
        for key, value in files.items():
            value = getattr(value, "study", value)  # another study's output: its spec file
            if value is not None and os.path.isdir(value):
                raise SpecError(f"{path}: {key}: {value} is a directory; expected a file")
