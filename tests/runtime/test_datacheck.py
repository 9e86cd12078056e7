"""`xspec data check` finds what would break a run, before any job is submitted."""

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from xspec.cli import app


def _dataset(root, n_bad=1):
    (root / "img").mkdir(parents=True)
    rows = ["image,caption"]
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 30 * i, dtype=np.uint8)).save(root / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,a bag number {i}" if i % 2 else f"img/{i}.png,a shoe {i}")
    for i in range(n_bad):
        (root / "img" / f"bad{i}.png").write_bytes(b"garbage")
        rows.append(f"img/bad{i}.png,broken bags")
    (root / "train.csv").write_text("\n".join(rows) + "\n")


SPEC = """
[study]
name = "check"
[data]
train = {{ format = "csv", path = "{root}/train.csv" }}
clean = {{ size = {clean} }}
eval = {{ format = "fashion_mnist", split = "test", size = 50 }}
max_bad_fraction = 0.2
[attack]
kind = "label_consistent"
target = "bag"
poisons = 5
[model]
arch = "xspec-vit-micro"
[pretrain]
epochs = 1
[clean]
lr = 1e-5
"""


def test_data_check_reports_counts_and_passes(tmp_path):
    _dataset(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(root=tmp_path, clean=1))
    result = CliRunner().invoke(app, ["data", "check", str(spec)])
    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    assert "train: rows 7, readable images 6, bad images 1" in out
    assert "captions naming target 4" in out  # "bag" x3 and "bags" once; never "shoe"
    assert "label_consistent wants 5 poisons but only 4 captions name 'bag'" in out
    assert "data ok" in out


def test_data_check_fails_on_a_cleaning_set_too_big(tmp_path):
    _dataset(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(root=tmp_path, clean=100))
    result = CliRunner().invoke(app, ["data", "check", str(spec)])
    assert result.exit_code == 1
    assert "exceed the 7 training pairs" in " ".join(result.output.split())


def test_data_check_rejects_what_the_run_would(tmp_path):
    """1 unreadable image of 7 is over the default max_bad_fraction (1 %): the run would stop."""
    _dataset(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(root=tmp_path, clean=1).replace("max_bad_fraction = 0.2\n", ""))
    result = CliRunner().invoke(app, ["data", "check", str(spec)])
    out = " ".join(result.output.split())
    assert result.exit_code == 1, out
    assert "fatal: 1 of 7 images are unreadable, more than data.max_bad_fraction = 0.01" in out
    spec.write_text(SPEC.format(root=tmp_path, clean=1).replace(
        "max_bad_fraction = 0.2", 'on_bad_image = "fail"'))
    out = " ".join(CliRunner().invoke(app, ["data", "check", str(spec)]).output.split())
    assert "fatal: 1 unreadable image(s) and data.on_bad_image = 'fail'" in out
