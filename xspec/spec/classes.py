"""Class lists of evaluation sets: shipped files (fashion_mnist, imagenet1k) or a user's file."""

from __future__ import annotations

from functools import cache
from importlib import resources

from xspec.errors import SpecError
from xspec.textfiles import read_utf8

BUILTIN = ("fashion_mnist", "imagenet1k")


@cache
def read_classes(name: str) -> tuple[str, ...]:
    """A class list by built-in name or path to a text file (one class per line)."""
    if name in BUILTIN:
        text = resources.files("xspec.data").joinpath(f"classes/{name}.txt").read_text()
    else:
        try:
            text = read_utf8(name, SpecError)
        except SpecError as exc:
            raise SpecError(f"class list {exc}; built-in lists: {', '.join(BUILTIN)}") from None
    classes = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not classes:
        raise SpecError(f"class list {name!r} is empty")
    return classes


def class_names(source) -> tuple[str, ...] | None:
    """The classes of an evaluation source, or None when only the data itself can tell."""
    if source.format == "fashion_mnist":
        return read_classes("fashion_mnist")
    return read_classes(source.classes)
