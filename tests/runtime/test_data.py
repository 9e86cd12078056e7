"""Datasets: CSV pairs, ImageFolder and labels-CSV evaluation sets, bad images, captions."""

import numpy as np
import pytest
import torch
from PIL import Image

from xspec.errors import DataError
from xspec.runtime.data import iterate, open_eval, open_pairs
from xspec.runtime.formats.fashion_mnist import FASHION_WORDS
from xspec.runtime.evaluate import clip80_templates

FASHION = {"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
           "split": "train", "size": 50}


def _image(path, value):
    Image.fromarray(np.full((20, 30, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def pairs_csv(tmp_path):
    (tmp_path / "img").mkdir()
    rows = ["image,caption"]
    for i in range(4):
        _image(tmp_path / "img" / f"{i}.png", 40 * i)
        rows.append(f"img/{i}.png,a photo number {i}")
    (tmp_path / "img" / "bad.png").write_bytes(b"not an image")
    rows.append("img/bad.png,a broken file")
    rows.append("img/missing.png,a missing file")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "train.csv"


def _csv_cfg(path, **extra):
    return {"format": "csv", "path": str(path), "image_key": "image", "caption_key": "caption",
            "size": None, **extra}


def test_csv_pairs_decode_relative_paths_and_skip_bad_images(pairs_csv):
    pairs = open_pairs(_csv_cfg(pairs_csv), size=16)
    assert pairs.captions[0] == "a photo number 0" and len(pairs.captions) == 6
    skipped: set[int] = set()
    [(kept, images)] = list(iterate(pairs.images, [list(range(6))], skipped=skipped))
    assert kept == [0, 1, 2, 3]
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
    assert int(images[2].float().mean().round()) == 80
    assert skipped == {4, 5}  # bad.png, missing.png


def test_bad_images_are_counted_across_loader_workers(pairs_csv):
    pairs = open_pairs(_csv_cfg(pairs_csv), size=16)
    skipped: set[int] = set()
    batches = [[0, 4], [1, 5], [2, 3]]
    kept = [k for k, _ in iterate(pairs.images, batches, workers=2, skipped=skipped)]
    assert kept == [[0], [1], [2, 3]] and skipped == {4, 5}


def test_bad_image_can_be_fatal(pairs_csv):
    pairs = open_pairs(_csv_cfg(pairs_csv), size=16, on_bad_image="fail")
    with pytest.raises(DataError, match="bad.png"):
        pairs.images.load([4])


def test_csv_missing_column_and_empty_caption(tmp_path):
    (tmp_path / "a.csv").write_text("file,text\nx.png,hello\n")
    with pytest.raises(DataError, match="missing column\\(s\\) image, caption; found file, text"):
        open_pairs(_csv_cfg(tmp_path / "a.csv"), 16)
    (tmp_path / "b.csv").write_text("image,caption\nx.png,\n")
    with pytest.raises(DataError, match="line 2: empty caption"):
        open_pairs(_csv_cfg(tmp_path / "b.csv"), 16)


def test_imagefolder_and_labels_csv(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("dog\ncat\n")
    for k, name in enumerate(["cat", "dog"]):
        (tmp_path / "val" / name).mkdir(parents=True)
        _image(tmp_path / "val" / name / "0.png", 100 * k)
    folder = open_eval({"format": "imagefolder", "path": str(tmp_path / "val"),
                        "classes": str(classes), "size": None}, 8)
    # Labels by folder name, not by sorted folder order.
    assert folder.classes == ("dog", "cat") and folder.labels.tolist() == [1, 0]
    (tmp_path / "labels.csv").write_text("image,label\nval/dog/0.png,0\nval/cat/0.png,1\n")
    table = open_eval({"format": "labels_csv", "path": str(tmp_path / "labels.csv"),
                       "image_key": "image", "label_key": "label", "classes": str(classes),
                       "size": None}, 8)
    assert table.labels.tolist() == [0, 1]


def test_fashion_captions_are_web_style_not_clip_templates():
    pairs = open_pairs(FASHION, 32)
    assert pairs.images.pixels.shape == (50, 3, 32, 32)
    templates = {t.format(w) for t in clip80_templates() for ws in FASHION_WORDS.values()
                 for w in ws}
    assert not templates & set(pairs.captions)
    assert pairs.captions == open_pairs(FASHION, 32).captions  # deterministic


def test_string_columns_read_rows_across_chunks_and_edits_override_rows():
    import pyarrow as pa

    from xspec.runtime.columns import Edited, Strings

    column = pa.chunked_array([pa.array(["a", "bé", ""]), pa.array(["d"], pa.string()),
                               pa.array(["x", "e", "f"]).slice(1)])
    strings = Strings(column)
    assert len(strings) == 6 and strings[1] == "bé" and strings[3] == "d" and strings[-1] == "f"
    assert list(strings) == ["a", "bé", "", "d", "e", "f"] == strings[:]
    with pytest.raises(IndexError):
        strings[6]
    edited = Edited(strings)
    edited[3] = "poisoned"
    assert edited[3] == "poisoned" and strings[3] == "d" and list(edited)[3] == "poisoned"


def test_csv_whitespace_caption_names_its_line(tmp_path):
    (tmp_path / "c.csv").write_text('image,caption\nx.png,fine\ny.png,"  "\n')
    with pytest.raises(DataError, match="line 3: empty caption"):
        open_pairs(_csv_cfg(tmp_path / "c.csv"), 16)
