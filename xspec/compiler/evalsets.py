"""The evaluation sets of a node's config beside the primary one (`xspec.spec.evalsets`).

Only what a spec declares enters the config: a spec without `[evaluate.sets]`,
`[evaluate.retrieval]` or a primary name keeps its node ids. Class subsets are resolved here to
indices of the source's class list, and template files to their lines, so a node's id changes
with their contents and the runtime reads no spec-side file.
"""

from __future__ import annotations

from importlib import resources
from xspec.errors import SpecError
from xspec.spec.classes import class_names, wordnet_ids
from xspec.spec.evalsets import SUBSETS
from xspec.textfiles import read_utf8

DEFAULT_PRIMARY = "eval"


def sets_config(spec) -> dict:
    """{"primary", "sets", "retrieval"}: the keys the spec sets, for the node's eval config."""
    evaluate = spec.evaluate
    config: dict = {}
    if evaluate.primary != DEFAULT_PRIMARY:
        config["primary"] = evaluate.primary
    if evaluate.sets:
        config["sets"] = {name: _zero_shot(name, s) for name, s in evaluate.sets.items()}
    if evaluate.retrieval:
        config["retrieval"] = {name: {"source": s.source.model_dump(mode="json")}
                               for name, s in evaluate.retrieval.items()}
    return config


def _zero_shot(name: str, zset) -> dict:
    where = f"evaluate.sets.{name}"
    config = {"source": zset.source.model_dump(mode="json")}
    if zset.subset is not None:
        config["subset"] = subset_indices(zset.source, zset.subset, where)
    if zset.templates != "clip80":
        config["templates"] = read_templates(zset.templates, f"{where}.templates")
    if zset.probe is not None:
        config["probe"] = zset.probe.model_dump(mode="json")
    return config


def read_templates(path: str, where: str) -> list[str]:
    """Templates from a text file: one a line, each with {} where the class name goes."""
    lines = [line.strip() for line in read_utf8(path, SpecError).splitlines() if line.strip()]
    bad = [t for t in lines if "{}" not in t]
    if not lines or bad:
        raise SpecError(f"{where}: {path}: " + (f"template {bad[0]!r} has no {{}} for the class "
                                                "name" if bad else "no templates"))
    return lines


def subset_names(subset: str | list[str]) -> list[str]:
    """The classes a subset names: a shipped subset's WordNet ids, a file's lines (its path
    resolved against the spec when loaded) or the list."""
    if isinstance(subset, list):
        return subset
    if subset in SUBSETS:
        text = resources.files("xspec.data").joinpath(f"classes/{subset}_wnids.txt").read_text()
    else:
        try:
            text = read_utf8(subset, SpecError)
        except SpecError as exc:
            raise SpecError(f"{exc}; shipped subsets: {', '.join(SUBSETS)}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def subset_indices(source, subset: str | list[str], where: str) -> list[int]:
    """Sorted indices, into the source's class list, of the classes `subset` names (by class
    name, case and `_` for space ignored, or by WordNet id where the list has them)."""
    classes = class_names(source) if hasattr(source, "classes") or \
        source.format == "fashion_mnist" else None
    if classes is None:
        raise SpecError(f"{where}.subset: the source ({source.format}) has no class list to "
                        "take a subset of")
    list_name = getattr(source, "classes", "fashion_mnist")
    wnids = {w: i for i, w in enumerate(wordnet_ids(list_name))}
    by_name: dict[str, list[int]] = {}
    for index, cls in enumerate(classes):
        by_name.setdefault(_plain(cls), []).append(index)
    found = []
    for entry in subset_names(subset):
        hits = [wnids[entry]] if entry in wnids else by_name.get(_plain(entry), [])
        if len(hits) != 1:
            problem = (f"names {len(hits)} classes (indices {', '.join(map(str, hits))}); name it "
                       "by its WordNet id" if hits else f"is not a class of {list_name!r} "
                       f"({len(classes)} classes, e.g. {', '.join(classes[:3])})")
            raise SpecError(f"{where}.subset: {entry!r} {problem}")
        found.append(hits[0])
    if len(set(found)) != len(found):
        raise SpecError(f"{where}.subset: a class is named twice")
    return sorted(found)


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def target_notes(spec) -> list[str]:
    """A note per zero-shot set the attack's target is not a class of (no ASR there)."""
    target = getattr(spec.attack, "target", None)
    if target is None or "asr" not in spec.evaluate.metrics:
        return []
    notes = []
    for name, zset in spec.evaluate.sets.items():
        classes = class_names(zset.source) if hasattr(zset.source, "classes") or \
            zset.source.format == "fashion_mnist" else None
        if classes is None:
            continue
        kept = classes if zset.subset is None else [
            classes[i] for i in subset_indices(zset.source, zset.subset, f"evaluate.sets.{name}")]
        if target not in kept:
            notes.append(f"evaluate.sets.{name}: attack.target {target!r} is not one of its "
                         "classes; no ASR is measured on it")
    return notes

