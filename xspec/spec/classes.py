"""Class lists of evaluation sets: shipped files (fashion_mnist, imagenet1k) or a user's file,
and the matching of ImageFolder folder names to them.

imagenet1k_wnids.txt holds the WordNet id of each imagenet1k class, in the same order: the
ILSVRC2012 class index order, which is the sorted order of the 1000 wnids (taken from the
widely used imagenet_class_index.json, whose entry 0 is n01440764 "tench" and 999 n15075141
"toilet tissue"); the standard ImageNet val layout names its folders by them."""

from __future__ import annotations

from functools import cache
from importlib import resources

from xspec.errors import DataError, SpecError
from xspec.textfiles import read_utf8

BUILTIN = ("fashion_mnist", "imagenet1k")
MAX_CLASS_FILE = 16 * 2**20  # bytes; ImageNet-21k's 21,841 names take 0.4 MB


@cache
def read_classes(name: str) -> tuple[str, ...]:
    """A class list by built-in name or path to a text file (one class per line)."""
    if name in BUILTIN:
        text = resources.files("xspec.data").joinpath(f"classes/{name}.txt").read_text()
    else:
        try:
            text = read_utf8(name, SpecError, MAX_CLASS_FILE)
        except SpecError as exc:
            raise SpecError(f"class list {exc}; built-in lists: {', '.join(BUILTIN)}") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
             if line.strip()]
    classes = tuple(line for _, line in lines)
    if not classes:
        raise SpecError(f"class list {name!r} is empty")
    if name not in BUILTIN and len(set(classes)) < len(classes):
        first: dict[str, int] = {}
        for number, line in lines:
            if line in first:  # the lines are named, never shown: the file may be any file
                raise SpecError(f"class list {name}: lines {first[line]} and {number} name the "
                                "same class; each class once")
            first[line] = number
    return classes


def examples(name: str, classes: tuple[str, ...], count: int = 5) -> str:
    """How an error describes a class list: its size and, for a built-in list, a few names.
    A user's file is never quoted: a spec could name any file (an env file with a secret)."""
    if name in BUILTIN:
        return f"{len(classes)} classes, e.g. {', '.join(classes[:count])}"
    return f"{len(classes)} classes listed in {name}"


def class_names(source) -> tuple[str, ...] | None:
    """The classes of an evaluation source, or None when only the data itself can tell."""
    if source.format == "fashion_mnist":
        return read_classes("fashion_mnist")
    return read_classes(source.classes)


WORDNET_IDS = {"imagenet1k": "imagenet1k_wnids.txt"}


@cache
def wordnet_ids(name: str) -> tuple[str, ...]:
    """The WordNet ids of a built-in class list, index for index (empty if it has none)."""
    if name not in WORDNET_IDS:
        return ()
    text = resources.files("xspec.data").joinpath(f"classes/{WORDNET_IDS[name]}").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def folder_labels(root: str, folders: list[str], name: str) -> list[int]:
    """The class index of each ImageFolder folder, by its name: a class name of list `name`
    (case and `_` for space ignored) or, for imagenet1k, a WordNet id such as n07753592.
    A folder that matches no class, or two folders of one class, is an error."""
    classes = read_classes(name)
    by_name: dict[str, list[int]] = {}
    for index, cls in enumerate(classes):
        by_name.setdefault(_plain(cls), []).append(index)
    wnids = {wnid: index for index, wnid in enumerate(wordnet_ids(name))}
    hint = " or a WordNet id such as n01440764" if wnids else ""
    labels, seen = [], {}
    for folder in folders:
        found = [wnids[folder]] if folder in wnids else by_name.get(_plain(folder), [])
        if len(found) > 1:
            raise DataError(f"{root}/{folder}: the name of {len(found)} classes of {name!r} "
                            f"(indices {', '.join(map(str, found))}); name the folder{hint}")
        if not found:
            raise DataError(f"{root}/{folder}: matches no class of {name!r} "
                            f"({examples(name, classes, 3)}); name each folder by its "
                            f"class{hint}")
        if found[0] in seen:
            raise DataError(f"{root}: folders {seen[found[0]]!r} and {folder!r} are both class "
                            f"{classes[found[0]]!r}")
        seen[found[0]] = folder
        labels.append(found[0])
    return labels
