"""Shared test data importable from any test module (tests/ is put on sys.path by conftest)."""

import textwrap


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
