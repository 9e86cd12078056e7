"""Shared test data importable from any test module (tests/ is put on sys.path by conftest)."""

import contextlib
import sys
import tempfile
import textwrap
from pathlib import Path


def mini_spec(name: str, body: str, *, train: int = 256, clean: int | None = None,
              evaluate: int = 64, poisons: int = 16, trigger: str | None = None, data: str = "",
              arch: str = "xspec-vit-micro") -> str:
    """A miniature study on generated Fashion-MNIST pairs with a BadNet attack on "bag" (no
    attack where `poisons` is 0): the head every such test shares ([study], [data], [attack],
    [model]), then `body`, the tables the test is about. `evaluate` is the evaluation set's
    size; `trigger` is the attack's trigger table as TOML (`{ size = 4 }`); `data` adds lines
    to [data]."""
    lines = [f'[study]\nname = "{name}"\nseed = 0\n',
             f'[data]\ntrain = {{ format = "fashion_mnist", size = {train} }}']
    if clean is not None:
        lines.append(f"clean = {{ size = {clean} }}")
    lines.append(f'eval = {{ format = "fashion_mnist", split = "test", size = {evaluate} }}')
    if data:
        lines.append(textwrap.dedent(data).strip())
    lines.append(f'\n[attack]\nkind = "badnet"\ntarget = "bag"\npoisons = {poisons}' if poisons
                 else '\n[attack]\nkind = "none"')
    if trigger:
        lines.append(f"trigger = {trigger}")
    lines.append(f'\n[model]\narch = "{arch}"\n')
    return "\n".join(lines) + "\n" + textwrap.dedent(body).strip() + "\n"


BASE = mini_spec("t", clean=64, body="""
    [pretrain]
    objective = "mmcl"
    epochs = 2

    [clean]
    lr = [1e-5, 2e-5]
    epochs = 2
    """)


@contextlib.contextmanager
def registries_kept():
    """Undo what plugins register while the block runs: the registries are process-wide, so a
    test's plugin would otherwise stay registered for every test after it. The built-ins are
    loaded first (they register once per process). Plugin modules imported in the block from
    examples/ or a temporary folder are forgotten too, so that the next import registers them
    again."""
    from xspec.extend.plugins import load_builtins
    from xspec.extend.registry import ALL

    load_builtins()
    saved = [registry.snapshot() for registry in ALL]
    before = set(sys.modules)
    plugin_folders = (str(Path(__file__).resolve().parent.parent / "examples"),
                      tempfile.gettempdir())
    try:
        yield
    finally:
        for registry, entries in zip(ALL, saved):
            registry.restore(entries)
        for name in set(sys.modules) - before:
            path = getattr(sys.modules[name], "__file__", None)
            if path and path.startswith(plugin_folders):
                sys.modules.pop(name, None)


def wobble_attack(default: float) -> type:
    """Register a plugin attack `wobble` whose `strength` defaults to `default` (left out of
    ids at its default): calling it again with another default is a new release of the plugin
    that changed a default. Run it inside `registries_kept()` (the `registries` fixture)."""
    from typing import Annotated, Literal

    from xspec.extend import XspecModel, register_attack
    from xspec.spec.base import OmitAtDefault

    class Wobble(XspecModel):
        kind: Literal["wobble"]
        target: str
        poisons: int
        strength: Annotated[float, OmitAtDefault] = default

    Wobble.__qualname__ = "Wobble"
    return register_attack("xspec.runtime.attacks.base:NoAttack")(Wobble)
