"""Loading the modules that register pieces: xspec's own, a study's plugins, installed ones.

- built-ins: `xspec.spec.tables` (attacks, data formats, loss parts, deep clustering,
  shrink-and-perturb),
  `xspec.compiler.kinds` (node kinds) and every module of the `xspec.builtin` package;
- `[study] plugins = ["name", ...]`: a module `name.py` (or package `name/`) in the spec's
  folder, else an importable module on `sys.path`;
- every entry point of the `xspec.plugins` group of installed distributions.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, TypeVar

from xspec.errors import SpecError
from xspec.extend.registry import generation

T = TypeVar("T")

GROUP = "xspec.plugins"
_loaded: set[str] = set()


def load_builtins() -> None:
    if "builtins" in _loaded:
        return
    _loaded.add("builtins")
    import xspec.builtin
    import xspec.compiler.kinds
    import xspec.spec.policies
    import xspec.spec.tables.attacks
    import xspec.spec.tables.data
    import xspec.spec.tables.defences
    import xspec.spec.tables.training  # noqa: F401

    for info in pkgutil.iter_modules(xspec.builtin.__path__, "xspec.builtin."):
        importlib.import_module(info.name)
    for point in entry_points(group=GROUP):
        _import(point.name, lambda p=point: p.load(), f"entry point {point.value}")


def for_registered(build: Callable[[], T]) -> Callable[[], T]:
    """`build()`'s result, built again whenever a piece has registered since (a plugin's attack
    or defence changes the models built from the registries), the built-ins loaded first."""
    built: dict[tuple[int, ...], T] = {}

    def current() -> T:
        load_builtins()
        key = generation()
        if key not in built:
            built.clear()
            built[key] = build()
        return built[key]

    return current


def load_plugins(names: list[str], base: Path, key: str = "study.plugins") -> list[dict]:
    """Import each plugin: a module name (a file `<name>.py` or package `<name>/` in `base`,
    else a module on `sys.path`) or the path of a `.py` file (relative to `base`). Returns
    [{"name", "path"}] for node processes to import the same. `key` names the option in errors.
    A plugin that imports torch when imported is noted in TORCH_AT_IMPORT."""
    load_builtins()
    found = []
    for name in names:
        name, path = _by_path(name, base, key) if name.endswith(".py") else (
            name, _local(name, base))
        torch_before = "torch" in sys.modules
        if path is not None:
            _import(name, lambda n=name, p=path: _from_file(n, p), str(path), key=key)
        else:
            _import(name, lambda n=name: importlib.import_module(n), "sys.path", base, key)
        if _imports_torch(sys.modules.get(name), torch_before):
            TORCH_AT_IMPORT.add(name)
        found.append({"name": name, "path": str(path) if path else None})
    return found


TORCH_AT_IMPORT: set[str] = set()


def torch_note(name: str) -> str:
    return (f"plugin {name!r} imports torch when it is imported, so `xspec plan` and `xspec "
            "validate` load torch too (seconds per call): import torch inside the functions "
            "that run in the node (docs/EXTENDING.md, 'No torch at import time')")


def _imports_torch(module, torch_before: bool) -> bool:
    """Torch newly imported while the plugin loaded, or a torch object among its globals."""
    if module is None:
        return False
    if not torch_before and "torch" in sys.modules:
        return True
    for value in vars(module).values():
        owner = value.__name__ if isinstance(value, type(sys)) else getattr(
            value, "__module__", None)
        if isinstance(owner, str) and (owner == "torch" or owner.startswith("torch.")):
            return True
    return False


def _by_path(text: str, base: Path, key: str) -> tuple[str, Path]:
    path = (base / text).resolve()
    if not path.is_file():
        raise SpecError(f"{key}: plugin file {text!r} does not exist ({path})")
    return path.stem, path


def import_recorded(plugins: list[dict]) -> None:
    """In a node process: import the plugins its study loaded, from the same files."""
    load_builtins()
    for plugin in plugins:
        if plugin["name"] in sys.modules:
            continue
        name, path = plugin["name"], plugin["path"]
        if path:
            _import(name, lambda: _from_file(name, Path(path)), path)
        else:
            _import(name, lambda: importlib.import_module(name), "sys.path")


def _local(name: str, base: Path) -> Path | None:
    for path in (base / f"{name}.py", base / name / "__init__.py"):
        if path.is_file():
            return path.resolve()
    return None


def _from_file(name: str, path: Path):
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import(name: str, load, where: str, base: Path | None = None,
            key: str = "study.plugins") -> None:
    try:
        load()
    except ModuleNotFoundError as exc:
        if base is not None and exc.name == name:
            raise SpecError(f"{key}: no plugin {name!r}: neither {base / name}.py nor "
                            f"{base / name}/ exists, and no module {name!r} is on sys.path"
                            ) from None
        raise SpecError(f"{key}: plugin {name!r} ({where}) failed to import: "
                        f"{type(exc).__name__}: {exc}") from None
    except SpecError:
        raise
    except SystemExit as exc:  # a plugin must not end xspec silently with its own exit code
        raise SpecError(f"{key}: plugin {name!r} ({where}) called sys.exit({exc.code!r}) "
                        "while being imported") from None
    except Exception as exc:
        raise SpecError(f"{key}: plugin {name!r} ({where}) failed to import: "
                        f"{type(exc).__name__}: {exc}") from None
