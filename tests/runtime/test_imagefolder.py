"""ImageFolder evaluation sets: each folder's images get the class its name names (a class name
or, for imagenet1k, a WordNet id); a folder that names no class is refused."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xspec.cli import app
from xspec.errors import DataError
from xspec.runtime.data import open_eval
from xspec.spec.classes import read_classes, wordnet_ids


def _folders(root, names):
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 20 * k, dtype=np.uint8)).save(root / name / "0.png")
    return root


def _labels(root, classes):
    data = open_eval({"format": "imagefolder", "path": str(root), "classes": classes,
                      "size": None}, 8)
    return dict(zip((p.split("/")[-2] for p in data.images.paths), data.labels.tolist()))


def test_folders_named_by_class_get_that_class(tmp_path):
    root = _folders(tmp_path / "val", ["ankle_boot", "bag", "T-shirt", "trouser"])
    assert _labels(root, "fashion_mnist") == {"ankle_boot": 9, "bag": 8, "T-shirt": 0,
                                              "trouser": 1}


def test_imagenet_folders_named_by_wordnet_id(tmp_path):
    assert len(wordnet_ids("imagenet1k")) == 1000 == len(set(wordnet_ids("imagenet1k")))
    assert list(wordnet_ids("imagenet1k")) == sorted(wordnet_ids("imagenet1k"))
    root = _folders(tmp_path / "val", ["n01440764", "n07753592", "n15075141"])
    labels = _labels(root, "imagenet1k")
    assert labels == {"n01440764": 0, "n07753592": 954, "n15075141": 999}
    classes = read_classes("imagenet1k")
    assert (classes[0], classes[954], classes[999]) == ("tench", "banana", "toilet paper")


def test_a_folder_that_names_no_class_is_refused(tmp_path):
    root = _folders(tmp_path / "val", ["bag", "bags"])
    with pytest.raises(DataError, match=r"val/bags: matches no class of 'fashion_mnist' \(10 "
                                        r"classes, e.g. t-shirt, trouser, pullover\)"):
        _labels(root, "fashion_mnist")


def test_an_ambiguous_imagenet_name_asks_for_the_wordnet_id(tmp_path):
    root = _folders(tmp_path / "val", ["missile"])
    with pytest.raises(DataError, match=r"the name of 2 classes of 'imagenet1k' \(indices 657, "
                                        r"744\); name the folder or a WordNet id"):
        _labels(root, "imagenet1k")


def test_two_folders_of_one_class_are_refused(tmp_path):
    root = _folders(tmp_path / "val", ["ankle boot", "ankle_boot"])
    with pytest.raises(DataError, match="folders 'ankle boot' and 'ankle_boot' are both class"):
        _labels(root, "fashion_mnist")


def test_data_check_reports_an_unmatched_folder(tmp_path):
    root = _folders(tmp_path / "val", ["bag", "sneaker", "handbag"])
    spec = tmp_path / "s.toml"
    spec.write_text(f"""
[study]
name = "folders"
[data]
train = {{ format = "fashion_mnist", size = 64 }}
eval = {{ format = "imagefolder", path = "{root}", classes = "fashion_mnist" }}
[attack]
kind = "badnet"
target = "bag"
poisons = 4
[model]
arch = "xspec-vit-micro"
[pretrain]
epochs = 1
""")
    result = CliRunner().invoke(app, ["data", "check", str(spec)])
    out = " ".join(result.output.split())
    assert result.exit_code == 1, out
    assert f"fatal: {root}/handbag: matches no class of 'fashion_mnist'" in out
    assert "data check failed" in out
