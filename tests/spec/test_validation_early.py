"""Values that could only fail later (or overflow) are validation errors naming the key."""

import pytest

from xspec.errors import DataError, SpecError
from xspec.spec.load import load_spec


def _error(write_spec, text: str) -> str:
    path = write_spec(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize("old, new, expected", [
    ("[clean]\nlr = [1e-5, 2e-5]", "[clean]\nlr = inf", "clean.lr: input should be a finite number"),
    ("[clean]\n", "[clean]\nweight_decay = inf\n",
     "clean.weight_decay: input should be a finite number"),
    ("[clean]\n", "[clean]\nssl_weight = inf\n",
     "clean.ssl_weight: input should be a finite number"),
    ("[pretrain]\n", "[pretrain]\nlr = nan\n", "pretrain.lr: input should be a finite number"),
    ("seed = 0", "seed = 18446744073709551616",
     "study.seed: must fit in 64 bits (at most 2**64 - 1 = 18446744073709551615), got "
     "18446744073709551616"),
    ("[clean]\nlr = [1e-5, 2e-5]\nepochs = 2", "[clean]\nlr = [1e-5, 2e-5]\nepochs = true",
     "clean.epochs: expected a number, got true"),
    ("[pretrain]\n", "[pretrain]\nlr = true\n", "pretrain.lr: expected a number, got true"),
    ("[clean]\n", "[evaluate]\nmetrics = []\n[clean]\n",
     "evaluate.metrics: list should have at least 1 item after validation, not 0"),
    ("[clean]\n", "[evaluate]\nmetrics = [\"asr\"]\n[clean]\n",
     "evaluate.metrics must include 'top1': pretrain.select = 'best_accuracy' selects by it"),
    ("poisons = 16", "poisons = 300", "attack.poisons = 300 exceeds the 256 training pairs"),
    ("poisons = 16", "poisons = 16\ntrigger = { size = 17 }",
     "attack.trigger.size = 17 exceeds the 16x16 images of model.arch 'xspec-vit-micro'"),
    ('name = "t"', 'name = "index.html"', "study.name: 'index.html' would collide with the "
     "report index"),
])
def test_early_errors(write_spec, base_spec, old, new, expected):
    assert old in base_spec
    assert expected in _error(write_spec, base_spec.replace(old, new, 1))


def test_fashion_mnist_full_split_bounds_poisons(write_spec, base_spec):
    text = base_spec.replace(', size = 256 }', ' }').replace("poisons = 16", "poisons = 70000")
    assert "attack.poisons = 70000 exceeds the 60000 training pairs" in _error(write_spec, text)


def test_checkpoint_path_that_is_a_directory(write_spec, base_spec, tmp_path):
    (tmp_path / "ckpt").mkdir()
    text = base_spec.replace('arch = "xspec-vit-micro"',
                             'arch = "xspec-vit-micro"\ninit = "ckpt"')
    assert _error(write_spec, text) == f"model.init: {tmp_path / 'ckpt'} is a directory; " \
                                       "expected a file"


def test_non_utf8_spec_names_the_line(write_spec, base_spec, tmp_path):
    path = tmp_path / "latin1.toml"
    text = base_spec.replace('name = "t"', 'name = "t"\nnotes = "caf\xe9"')
    path.write_bytes(text.encode("latin-1"))
    line = text.splitlines().index('notes = "caf\xe9"') + 1
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: line {line}: not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_non_utf8_captions_name_file_and_line(tmp_path):
    from xspec.runtime.data import open_pairs

    path = tmp_path / "train.csv"
    path.write_bytes("image,caption\na.png,a dog\nb.png,un caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        open_pairs({"format": "csv", "path": str(path), "image_key": "image",
                    "caption_key": "caption"}, 8)
    assert str(info.value) == f"{path}: line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8"


@pytest.mark.parametrize("label", ["bag", "3.0", "-1", "10"])
def test_labels_must_be_class_indices(tmp_path, label):
    from xspec.runtime.data import open_eval

    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    path = tmp_path / "labels.csv"
    path.write_text(f"image,label\na.png,1\nb.png,{label}\n")
    with pytest.raises(DataError) as info:
        open_eval({"format": "labels_csv", "path": str(path), "image_key": "image",
                   "label_key": "label", "classes": str(classes)}, 8)
    assert str(info.value) == f"{path}: line 3: label {label!r} is not a class index " \
                              "(an integer 0..9)"


def test_non_utf8_class_list(tmp_path):
    from xspec.spec.classes import read_classes

    path = tmp_path / "classes.txt"
    path.write_bytes("tench\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        read_classes(str(path))
    assert str(info.value).startswith(f"class list {path}: line 2: not UTF-8 text")
