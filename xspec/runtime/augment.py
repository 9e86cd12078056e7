"""SSL augmentations as CleanCLIP uses them: AutoAugment (ImageNet policy) on images, EDA on text.

Every sample's augmentation is a pure function of its seed, so a rerun, a resumed run or a
different batch composition sees the same augmented pair.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torchvision.transforms import v2

from xspec.runtime import eda_cleanclip as original
from xspec.runtime.wordnet import WordNet

# EDA's stop words (Wei & Zou 2019), trimmed to the common function words.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())

_NON_WORD = re.compile(r"[^\w']+|_")
_AUTOAUGMENT = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


def clean_text(text: str) -> list[str]:
    """Lower-case words with punctuation removed; in-word apostrophes survive ("woman's")."""
    words = (w.strip("'") for w in _NON_WORD.sub(" ", text.lower()).split())
    return [w for w in words if w]


def _synonyms(word: str, wordnet: WordNet) -> list[str]:
    """WordNet synonyms cleaned like captions, so an inserted phrase splits into plain words."""
    found = (" ".join(clean_text(s)) for s in wordnet.synonyms(word))
    return [s for s in dict.fromkeys(found) if s and s != word]


def synonym_replacement(words: list[str], n: int, rng: random.Random,
                        wordnet: WordNet) -> list[str]:
    """Replace every occurrence of up to `n` distinct non-stop words by one random synonym."""
    candidates = list(dict.fromkeys(w for w in words if w not in STOP_WORDS))
    rng.shuffle(candidates)
    out, replaced = list(words), 0
    for word in candidates:
        if replaced >= n:
            break
        options = _synonyms(word, wordnet)
        if options:
            synonym = rng.choice(options)
            out = [synonym if w == word else w for w in out]
            replaced += 1
    return " ".join(out).split()


def random_insertion(words: list[str], n: int, rng: random.Random,
                     wordnet: WordNet) -> list[str]:
    """Insert, `n` times, a synonym of a random non-stop word at a random position.

    As in the reference, each insertion gives up after 10 draws without a synonym.
    """
    out = list(words)
    for _ in range(n):
        for _attempt in range(10):
            word = out[rng.randrange(len(out))]
            options = [] if word in STOP_WORDS else _synonyms(word, wordnet)
            if options:
                out.insert(rng.randint(0, len(out)), rng.choice(options))
                break
    return " ".join(out).split()


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Swap two distinct random positions, `n` times."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Drop each word with probability `p`; keep one random word if all would go."""
    if len(words) <= 1:
        return list(words)
    kept = [w for w in words if rng.random() > p]
    return kept or [rng.choice(words)]


def _operations(n: int, alpha: float, wordnet: WordNet
                ) -> tuple[Callable[[list[str], random.Random], list[str]], ...]:
    return (
        lambda ws, rng: synonym_replacement(ws, n, rng, wordnet),
        lambda ws, rng: random_insertion(ws, n, rng, wordnet),
        lambda ws, rng: random_swap(ws, n, rng),
        lambda ws, rng: random_deletion(ws, alpha, rng),
    )


def eda(caption: str, rng: random.Random, wordnet: WordNet, alpha: float = 0.1) -> str:
    """One EDA operation, drawn uniformly, on the cleaned caption.

    The reference `eda(caption)[0]` that CleanCLIP uses draws 3 sentences per operation and
    keeps a random one, which is the same as drawing the operation uniformly.
    A caption with no words is returned unchanged.
    """
    words = clean_text(caption)
    if not words:
        return caption
    n = max(1, int(alpha * len(words)))
    operations = _operations(n, alpha, wordnet)
    op = operations[rng.randrange(len(operations))]
    return " ".join(op(words, rng))


def cleanclip_synonyms(wordnet: WordNet) -> Callable[[str], list[str]]:
    """The original's `get_synonyms` (utils/eda.py:83-92) over the offline WordNet, sorted."""
    def synonyms(word: str) -> list[str]:
        found = {original.clean_synonym(s) for s in wordnet.synonyms(word)}
        found.discard(word)
        return sorted(found)
    return synonyms


def augment_captions(captions: list[str], seeds: list[int], wordnet: WordNet,
                     alpha: float = 0.1, variant: str = "xspec") -> list[str]:
    """`variant` "cleanclip": the original's EDA (`xspec.runtime.eda_cleanclip`); a caption
    without letters is then left as it is (the pairs of `letterless = "skip"` never get here)."""
    if len(captions) != len(seeds):
        raise ValueError(f"{len(captions)} captions but {len(seeds)} seeds")
    if variant == "xspec":
        return [eda(c, random.Random(int(s)), wordnet, alpha) for c, s in zip(captions, seeds)]
    synonyms = cleanclip_synonyms(wordnet)
    out = []
    for caption, seed in zip(captions, seeds):
        try:
            out.append(original.eda(caption, random.Random(int(seed)), synonyms, alpha))
        except original.NoWords:
            out.append(caption)
    return out


def augment_images(images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """AutoAugment (ImageNet policy) per image, each drawn from its own seed.

    torchvision draws from the global CPU generator, so we reseed that generator per image
    and restore the caller's state afterwards (`torch.manual_seed` would also reseed CUDA).
    Not safe against other threads drawing from the global generator meanwhile.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} "
                         f"{list(images.shape)}")
    if len(seeds) != len(images):
        raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
    out = torch.empty_like(images)
    generator = torch.default_generator
    state = generator.get_state()
    try:
        for i, seed in enumerate(seeds.tolist()):
            generator.manual_seed(seed)
            out[i] = _AUTOAUGMENT(images[i])
    finally:
        generator.set_state(state)
    return out


@dataclass
class SslAugmenter:
    """What the training loop calls for MMCL+SSL: the augmented view of each (image, caption)."""

    wordnet_dir: str | None = None
    alpha: float = 0.1
    eda: str = "xspec"  # or "cleanclip": the original's EDA (xspec.runtime.eda_cleanclip)
    placement: str = "crop"  # or "full_image": v1 on the full image (xspec.runtime.augment_full)
    wordnet: WordNet = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.wordnet = WordNet(self.wordnet_dir)

    def __call__(self, images_uint8: torch.Tensor, captions: list[str], seeds: torch.Tensor,
                 text_seeds: torch.Tensor | None = None,
                 sources: tuple | None = None) -> tuple[torch.Tensor, list[str]]:
        """`text_seeds` (default: `seeds`) draw the captions' EDA apart from the images'.
        `sources` (image store, pair indices, poisoned mask): for `placement = "full_image"`."""
        if self.placement == "full_image":
            from xspec.runtime.augment_full import full_image_views

            store, kept, poisoned = sources
            images = full_image_views(store, kept, images_uint8, poisoned, seeds)
        else:
            images = augment_images(images_uint8, seeds)
        text_seeds = seeds if text_seeds is None else text_seeds
        return images, augment_captions(captions, text_seeds.tolist(), self.wordnet, self.alpha,
                                        self.eda)
