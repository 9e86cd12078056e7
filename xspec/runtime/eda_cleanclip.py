"""EDA as the original code runs it (`[pretrain]` / `[clean]` `eda = "cleanclip"`).

attack-cleanclip `utils/eda.py` (Wei & Zou's reference, called as `eda(caption)[0]` by
`utils/augment_text.py:9-11`) differs from xspec's EDA (`xspec.runtime.augment`) in four ways:
- cleaning (`get_only_chars`, eda.py:34-54): apostrophes are deleted, hyphens become spaces and
  every character outside a-z (digits too) becomes a space; its output is cleaned once more;
- stop words: its own list (eda.py:10-30), which includes "s", "t", "don" and "";
- random insertion (eda.py:147-165): a synonym of any word (stop words too), the first of its
  synonyms, at a position in [0, len - 1] (never at the end);
- it makes one sentence per operation (num_aug = 1 gives `int(1/4) + 1 = 1` each), shuffles the
  four and keeps the first: the random stream is consumed by all four operations.
A caption without letters leaves no words, and the original raises (random insertion draws
`randint(0, -1)`); here `eda` raises `NoWords`, and the caller decides (docs/FIDELITY.md).

The function takes a `random.Random` and calls it exactly as the original calls the `random`
module, so the same seed gives the same sentence (tests/runtime/test_fidelity_round3.py).
Synonyms come from `synonyms(word)`, the original's `get_synonyms` over xspec's offline WordNet
(sorted, since the original's order is a set's and varies between processes).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

STOP_WORDS = ("i me my myself we our ours ourselves you your yours yourself yourselves he him his "
              "himself she her hers herself it its itself they them their theirs themselves what "
              "which who whom this that these those am is are was were be been being have has "
              "had having do does did doing a an the and but if or because as until while of at "
              "by for with about against between into through during before after above below "
              "to from up down in out on off over under again further then once here there when "
              "where why how all any both each few more most other some such no nor not only "
              "own same so than too very s t can will just don should now").split() + [""]
LETTERS = set("qwertyuiopasdfghjklzxcvbnm ")


class NoWords(ValueError):
    """The caption has no letters: the original's EDA raises on it."""


def get_only_chars(line: str) -> str:
    for old, new in (("’", ""), ("'", ""), ("-", " "), ("\t", " "), ("\n", " ")):
        line = line.replace(old, new)
    clean = "".join(c if c in LETTERS else " " for c in line.lower())
    clean = re.sub(" +", " ", clean)
    return clean[1:] if clean[:1] == " " else clean


def clean_synonym(name: str) -> str:
    """A WordNet lemma cleaned as the original's `get_synonyms` does (eda.py:87-88)."""
    synonym = name.replace("_", " ").replace("-", " ").lower()
    return "".join(c for c in synonym if c in LETTERS)


def synonym_replacement(words, n, rng: random.Random, synonyms: Callable) -> list[str]:
    new_words = list(words)
    candidates = sorted(set(w for w in words if w not in STOP_WORDS))
    rng.shuffle(candidates)
    replaced = 0
    for word in candidates:
        options = synonyms(word)
        if len(options) >= 1:
            synonym = rng.choice(list(options))
            new_words = [synonym if w == word else w for w in new_words]
            replaced += 1
        if replaced >= n:
            break
    return " ".join(new_words).split(" ")


def random_deletion(words, p, rng: random.Random) -> list[str]:
    if len(words) == 1:
        return words
    kept = [w for w in words if rng.uniform(0, 1) > p]
    return kept if kept else [words[rng.randint(0, len(words) - 1)]]


def random_swap(words, n, rng: random.Random) -> list[str]:
    """n swaps; a swap gives up when its 4th draw of the second position is made (eda.py:130-140:
    the counter is checked after each draw, so a 4th draw that differs is not used either)."""
    new_words = list(words)
    for _ in range(n):
        i = j = rng.randint(0, len(new_words) - 1)
        draws = 0
        while j == i:
            j = rng.randint(0, len(new_words) - 1)
            draws += 1
            if draws > 3:
                break
        if draws <= 3:
            new_words[i], new_words[j] = new_words[j], new_words[i]
    return new_words


def random_insertion(words, n, rng: random.Random, synonyms: Callable) -> list[str]:
    """n insertions; one gives up at its 10th draw of a word, even when that word has synonyms
    (eda.py:153-161 checks the counter after the lookup)."""
    new_words = list(words)
    for _ in range(n):
        options: list[str] = []
        draws = 0
        while len(options) < 1 and draws < 10:
            options = synonyms(new_words[rng.randint(0, len(new_words) - 1)])
            draws += 1
        if draws >= 10:
            continue
        new_words.insert(rng.randint(0, len(new_words) - 1), options[0])
    return new_words


def eda(caption: str, rng: random.Random, synonyms: Callable, alpha: float = 0.1) -> str:
    """`eda(caption)[0]` of the original for the same random stream."""
    words = [w for w in get_only_chars(caption).split(" ") if w != ""]
    if not words:
        raise NoWords(f"caption {caption!r} has no letters")
    n = max(1, int(alpha * len(words)))
    sentences = [" ".join(synonym_replacement(words, n, rng, synonyms)),
                 " ".join(random_insertion(words, n, rng, synonyms)),
                 " ".join(random_swap(words, n, rng)),
                 " ".join(random_deletion(words, alpha, rng))]
    sentences = [get_only_chars(s) for s in sentences]
    rng.shuffle(sentences)
    return sentences[0]


def has_letters(caption: str) -> bool:
    """Whether the original's EDA finds a word in the caption."""
    return any(w for w in get_only_chars(caption).split(" "))
