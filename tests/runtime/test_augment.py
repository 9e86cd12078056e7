import os
import random
from collections import Counter

import pytest
import torch

from xspec.errors import DataError
from xspec.runtime import wordnet as wordnet_module
from xspec.runtime.augment import (
    STOP_WORDS,
    SslAugmenter,
    augment_captions,
    augment_images,
    clean_text,
    eda,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from xspec.runtime.wordnet import WordNet

SYSTEM_WORDNET = "/usr/share/wordnet"
needs_wordnet = pytest.mark.skipif(
    not os.path.isdir(SYSTEM_WORDNET),
    reason="WordNet database missing: apt-get install wordnet-base",
)
LONG = "Young girl running with her dog on the green grass in the park at sunset near a lake"
SHORT = ["a", "dog", "the cat", "a photo of a bag", "!!", "bag."]


@pytest.fixture(scope="module")
def wn():
    if not os.path.isdir(SYSTEM_WORDNET):
        pytest.skip("WordNet database missing: apt-get install wordnet-base")
    return WordNet(SYSTEM_WORDNET)


def write_tiny_wordnet(root):
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    words = " ".join(f"Word_{i} 0" for i in range(10))
    (root / "data.noun").write_text(
        header
        + "00000001 06 n 03 bag 0 Handbag 0 pocket_book 0 000 | a container  \n"
        + f"00000002 06 n 0a {words} 000 | ten words, count in hex  \n"
    )
    adj = "00000003 00 s 02 handy 0 ready_to_hand(p) 0 000 | x  \n"
    (root / "data.adj").write_text(header + adj)
    for name in ("verb", "adv"):
        (root / f"data.{name}").write_text(header)
    (root / "noun.exc").write_text("bagz bag\n")


# WordNet reader


@needs_wordnet
def test_wordnet_finds_known_synonyms(wn):
    bag = wn.synonyms("bag")
    assert {"handbag", "pocketbook", "purse", "suitcase"} <= set(bag)
    assert "horseshoe" in wn.synonyms("shoe")
    assert "tee shirt" in wn.synonyms("t-shirt")
    assert "slipover" in wn.synonyms("pullover")


@needs_wordnet
def test_wordnet_output_is_clean_and_sorted(wn):
    bag = wn.synonyms("Bag")
    assert bag == sorted(set(bag))
    assert "bag" not in bag
    assert all(s == s.lower() and "_" not in s for s in bag)
    assert "old bag" in bag


@needs_wordnet
def test_wordnet_finds_base_form_like_nltk(wn):
    assert "shoe" in wn.synonyms("shoes")
    assert "handbag" in wn.synonyms("bags")
    assert "run" in wn.synonyms("running")


@needs_wordnet
def test_wordnet_unknown_word_is_empty(wn):
    assert wn.synonyms("xyzzyqux") == []
    assert wn.synonyms("") == []


@needs_wordnet
def test_wordnet_parses_once_per_path():
    WordNet(SYSTEM_WORDNET).load()
    tables = wordnet_module._CACHE[os.path.abspath(SYSTEM_WORDNET)]
    WordNet(SYSTEM_WORDNET).synonyms("bag")
    assert wordnet_module._CACHE[os.path.abspath(SYSTEM_WORDNET)] is tables


def test_wordnet_parses_data_files(tmp_path):
    write_tiny_wordnet(tmp_path)
    wn = WordNet(str(tmp_path))
    assert wn.synonyms("bag") == ["handbag", "pocket book"]
    assert wn.synonyms("bagz") == ["bag", "handbag", "pocket book"]
    assert wn.synonyms("word 3") == [f"word {i}" for i in range(10) if i != 3]
    assert wn.synonyms("word_3") == wn.synonyms("word 3")
    assert wn.synonyms("handy") == ["ready to hand"]
    assert wn.synonyms("license") == []


def test_wordnet_env_var_overrides_default(tmp_path, monkeypatch):
    write_tiny_wordnet(tmp_path)
    monkeypatch.setenv("XSPEC_WORDNET", str(tmp_path))
    assert WordNet().synonyms("handbag") == ["bag", "pocket book"]


def test_wordnet_missing_directory_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("XSPEC_WORDNET", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"apt-get install wordnet-base.*XSPEC_WORDNET"):
        WordNet()


def test_wordnet_missing_data_file_is_a_data_error(tmp_path):
    write_tiny_wordnet(tmp_path)
    (tmp_path / "data.verb").unlink()
    with pytest.raises(DataError, match="data.verb"):
        WordNet(str(tmp_path)).synonyms("bag")


# EDA


def test_clean_text_strips_punctuation_but_keeps_apostrophes():
    assert clean_text("A Woman's red T-shirt, at the 'beach'!") == [
        "a", "woman's", "red", "t", "shirt", "at", "the", "beach"]
    assert clean_text(" ?! ") == []


@needs_wordnet
def test_eda_is_deterministic_per_seed(wn):
    for seed in range(20):
        assert eda(LONG, random.Random(seed), wn) == eda(LONG, random.Random(seed), wn)


@needs_wordnet
def test_eda_differs_across_seeds(wn):
    outputs = {eda(LONG, random.Random(seed), wn) for seed in range(30)}
    assert len(outputs) >= 15


@needs_wordnet
def test_eda_pinned_outputs(wn):
    caption = "A photo of a black ankle boot."
    got = [eda(caption, random.Random(seed), wn) for seed in range(6)]
    assert got == PINNED


PINNED = [
    "a photo of a black ankle boot",
    "a grim photo of a black ankle boot",
    "a photo of a black ankle joint boot",
    "a photo melanize of a black ankle boot",
    "a photo of a black ankle articulatio talocruralis boot",
    "a photo ankle a black of boot",
]


@needs_wordnet
def test_eda_never_returns_empty(wn):
    for caption in SHORT + [LONG]:
        for seed in range(200):
            assert eda(caption, random.Random(seed), wn, alpha=0.9).strip()


@needs_wordnet
def test_eda_leaves_wordless_caption_unchanged(wn):
    assert eda("?!", random.Random(0), wn) == "?!"


@needs_wordnet
def test_eda_uses_all_four_operations(wn):
    words = clean_text(LONG)
    outs = [eda(LONG, random.Random(seed), wn).split() for seed in range(100)]
    assert any(len(o) < len(words) for o in outs)
    assert any(len(o) > len(words) for o in outs)
    assert any(o != words and Counter(o) == Counter(words) for o in outs)
    assert any(len(o) == len(words) and Counter(o) != Counter(words) for o in outs)


def test_random_swap_preserves_words():
    words = clean_text(LONG)
    for seed in range(20):
        out = random_swap(words, 2, random.Random(seed))
        assert Counter(out) == Counter(words) and out != words
    assert random_swap(["one"], 3, random.Random(0)) == ["one"]


def test_random_deletion_keeps_an_ordered_nonempty_subset():
    words = clean_text(LONG)
    for seed in range(50):
        out = random_deletion(words, 0.3, random.Random(seed))
        assert out and is_subsequence(out, words)
    assert len(random_deletion(words, 1.0, random.Random(0))) == 1
    assert random_deletion(words, 0.0, random.Random(0)) == words


@needs_wordnet
def test_synonym_replacement_replaces_only_content_words(wn):
    words = ["a", "photo", "of", "a", "bag"]
    expected = [["a", "photo", "of", "a", *s.split()] for s in wn.synonyms("bag")]
    expected += [["a", *s.split(), "of", "a", "bag"] for s in wn.synonyms("photo")]
    for seed in range(20):
        assert synonym_replacement(words, 1, random.Random(seed), wn) in expected
    assert synonym_replacement(["of", "the", "a"], 3, random.Random(0), wn) == ["of", "the", "a"]


@needs_wordnet
def test_synonym_replacement_uses_a_synonym(wn):
    out = synonym_replacement(["bag"], 1, random.Random(3), wn)
    assert " ".join(out) in wn.synonyms("bag")


@needs_wordnet
def test_random_insertion_adds_synonyms_of_content_words(wn):
    words = ["a", "photo", "of", "a", "bag"]
    allowed = set(" ".join(wn.synonyms("bag") + wn.synonyms("photo")).split())
    for seed in range(20):
        out = random_insertion(words, 1, random.Random(seed), wn)
        assert len(out) > len(words) and is_subsequence(words, out)
        assert set(out) - set(words) <= allowed
    assert random_insertion(["of", "the"], 2, random.Random(0), wn) == ["of", "the"]


def test_stop_words_are_lower_case_words():
    assert {"a", "the", "of"} <= STOP_WORDS and all(w.isalpha() and w.islower() for w in STOP_WORDS)


@needs_wordnet
def test_augment_captions_seeds_each_caption(wn):
    captions = [LONG, "a photo of a bag", "a dress"]
    seeds = [7, -3, 2**40]
    assert augment_captions(captions, seeds, wn) == [
        eda(c, random.Random(s), wn) for c, s in zip(captions, seeds)]
    with pytest.raises(ValueError, match="3 captions but 2 seeds"):
        augment_captions(captions, seeds[:2], wn)


def is_subsequence(short, long):
    it = iter(long)
    return all(w in it for w in short)


# Images


def random_images(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_augment_images_is_deterministic_per_seed():
    x = random_images()
    seeds = torch.arange(16, dtype=torch.int64) * 7919 - 40
    first = augment_images(x, seeds)
    assert torch.equal(first, augment_images(x, seeds))
    flipped = augment_images(x.flip(0), seeds.flip(0))
    assert torch.equal(flipped, first.flip(0))


def test_augment_images_keeps_dtype_and_shape_and_changes_images():
    x = random_images(32, 28)
    out = augment_images(x, torch.arange(32, dtype=torch.int64))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    changed = (out != x).flatten(1).any(1)
    assert changed.sum() >= 8
    other = augment_images(x, torch.arange(32, dtype=torch.int64) + 1000)
    assert not torch.equal(out, other)


def test_augment_images_leaves_global_rng_alone():
    torch.manual_seed(1234)
    reference = torch.rand(8)
    torch.manual_seed(1234)
    augment_images(random_images(), torch.arange(16, dtype=torch.int64))
    assert torch.equal(torch.rand(8), reference)


def test_augment_images_rejects_float_images():
    with pytest.raises(ValueError, match="expected uint8 images"):
        augment_images(torch.rand(2, 3, 8, 8), torch.arange(2))


@needs_wordnet
def test_ssl_augmenter_combines_both(wn):
    x = random_images(4)
    captions = [LONG, "a photo of a bag", "a dress", "shoe"]
    seeds = torch.tensor([5, 6, 7, 8], dtype=torch.int64)
    images, texts = SslAugmenter(SYSTEM_WORDNET)(x, captions, seeds)
    assert torch.equal(images, augment_images(x, seeds))
    assert texts == augment_captions(captions, [5, 6, 7, 8], wn)
