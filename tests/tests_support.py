"""Shared test data importable from any test module (tests/ is put on sys.path by conftest)."""

import contextlib
import sys
import tempfile
import textwrap
from pathlib import Path


def mini_spec(name: str, body: str, *, train: int = 256, clean: int | None = None,
              poisons: int = 16, trigger: str | None = None, data: str = "",
              arch: str = "xspec-vit-micro") -> str:
    """A miniature study on generated Fashion-MNIST pairs with a BadNet attack on "bag": the
    head every such test shares ([study], [data], [attack], [model]), then `body`, the tables
    the test is about. `trigger` is the attack's trigger table as TOML (`{ size = 4 }`);
    `data` adds lines to [data]."""
    lines = [f'[study]\nname = "{name}"\nseed = 0\n',
             f'[data]\ntrain = {{ format = "fashion_mnist", size = {train} }}']
    if clean is not None:
        lines.append(f"clean = {{ size = {clean} }}")
    lines.append('eval = { format = "fashion_mnist", split = "test", size = 64 }')
    if data:
        lines.append(textwrap.dedent(data).strip())
    lines.append(f'\n[attack]\nkind = "badnet"\ntarget = "bag"\npoisons = {poisons}')
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
