"""Offline WordNet 3.0 synonyms read straight from the Princeton data files.

Debian's `wordnet-base` ships data.* and *.exc but not the `lexnames` file nltk's reader
insists on, so we parse the files ourselves. Only what EDA needs is kept: the lemmas of
every synset and, per part of speech, which synsets each lemma belongs to.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from xspec.errors import DataError

DEFAULT_DIR = "/usr/share/wordnet"
ENV_VAR = "XSPEC_WORDNET"

_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}

# nltk's morphy detachment rules (WordNet's morph.c): inflected suffix -> base suffix.
_SUFFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"),
          ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
          ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}


@dataclass(frozen=True)
class _Tables:
    synsets: list[tuple[str, ...]]
    index: dict[str, dict[str, list[int]]]
    exceptions: dict[str, dict[str, tuple[str, ...]]]


_CACHE: dict[str, _Tables] = {}
_LOCK = threading.Lock()


def _strip_marker(word: str) -> str:
    """Adjectives may carry a syntactic marker: 'galore(ip)', 'outback(a)'."""
    return word[: word.index("(")] if word.endswith(")") and "(" in word else word


def _parse_data(path: Path, synsets: list[tuple[str, ...]],
                index: dict[str, list[int]]) -> None:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split(" ", 4 + 2 * int(line[14:16], 16))
            lemmas = tuple(_strip_marker(w).lower() for w in fields[4:-1:2])
            sid = len(synsets)
            synsets.append(lemmas)
            for lemma in lemmas:
                index.setdefault(lemma, []).append(sid)


def _parse_exceptions(path: Path) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            inflected, *bases = line.split()
            out[inflected] = tuple(bases)
    return out


def _load(directory: str) -> _Tables:
    root = Path(directory)
    synsets: list[tuple[str, ...]] = []
    index: dict[str, dict[str, list[int]]] = {}
    exceptions: dict[str, dict[str, tuple[str, ...]]] = {}
    for pos, name in _FILES.items():
        data = root / f"data.{name}"
        if not data.is_file():
            raise DataError(_missing_message(directory, f"missing {data}"))
        index[pos] = {}
        _parse_data(data, synsets, index[pos])
        exc = root / f"{name}.exc"
        exceptions[pos] = _parse_exceptions(exc) if exc.is_file() else {}
    return _Tables(synsets, index, exceptions)


def _missing_message(directory: str, detail: str) -> str:
    return (f"WordNet not found at {directory} ({detail}); "
            f"run `apt-get install wordnet-base` or set {ENV_VAR} to a WordNet 3.0 dict directory")


def _tables(directory: str) -> _Tables:
    tables = _CACHE.get(directory)
    if tables is None:
        with _LOCK:
            tables = _CACHE.get(directory)
            if tables is None:
                tables = _CACHE[directory] = _load(directory)
    return tables


def _base_forms(form: str, pos: str, tables: _Tables) -> list[str]:
    """nltk's `_morphy`: candidate lemmas of `form` that exist in WordNet for `pos`."""
    known = tables.index[pos]
    exc = tables.exceptions[pos].get(form)
    if exc is not None:
        candidates = [form, *exc]
    else:
        candidates = [form] + [form[: len(form) - len(old)] + new
                               for old, new in _SUFFIXES[pos] if form.endswith(old)]
    return [c for c in dict.fromkeys(candidates) if c in known]


class WordNet:
    """Synonym lookup over a WordNet dict directory; the parse is shared per process and path."""

    def __init__(self, directory: str | None = None):
        directory = directory or os.environ.get(ENV_VAR) or DEFAULT_DIR
        if not os.path.isdir(directory):
            raise DataError(_missing_message(directory, "no such directory"))
        self.directory = os.path.abspath(directory)
        self._memo: dict[str, list[str]] = {}

    def __reduce__(self):
        return (WordNet, (self.directory,))

    def load(self) -> WordNet:
        """Parse now rather than on the first lookup (e.g. before timing a training loop)."""
        _tables(self.directory)
        return self

    def synonyms(self, word: str) -> list[str]:
        """Lemmas sharing a synset with `word` (or its base form, as nltk's `synsets` finds it),
        across parts of speech, lower-case with spaces, without `word` itself, sorted."""
        key = word.strip().lower()
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._lookup(key)
        return list(found)

    def _lookup(self, word: str) -> list[str]:
        if not word:
            return []
        tables = _tables(self.directory)
        form = word.replace(" ", "_")
        lemmas: set[str] = set()
        for pos in _FILES:
            for base in _base_forms(form, pos, tables):
                for sid in tables.index[pos][base]:
                    lemmas.update(tables.synsets[sid])
        return sorted({lemma.replace("_", " ") for lemma in lemmas} - {form.replace("_", " ")})
