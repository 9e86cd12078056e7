"""Hostile or unlucky spec input (issue 19): files that are not regular files, files that never
end, sweeps too large to expand, deep nesting, class lists that are any file, nested ${...}."""

import os
import threading

import pytest

from xspec.errors import SpecError, XspecError
from xspec.spec.classes import read_classes
from xspec.spec.load import load_spec
from xspec.study import open_study


def _error(path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def test_a_fifo_as_the_spec_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    result = {}
    thread = threading.Thread(target=lambda: result.update(error=_error(fifo)), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "load_spec blocked on a FIFO"
    assert result["error"] == (f"cannot read spec {fifo}: not a regular file (a FIFO, socket or "
                               "device); give a file")


def test_dev_zero_as_spec_or_class_list_or_upstream_study_is_refused(write_spec, base_spec):
    assert "/dev/zero: not a regular file" in _error("/dev/zero")
    with pytest.raises(SpecError, match="class list /dev/zero: not a regular file"):
        read_classes("/dev/zero")
    text = base_spec.replace('[model]\narch = "xspec-vit-micro"',
                             '[model]\narch = "xspec-vit-micro"\n'
                             'init = { study = "/dev/zero", node = "clean" }')
    with pytest.raises(XspecError, match="/dev/zero: not a regular file"):
        open_study(write_spec(text))


def test_an_oversized_spec_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (5 * 2**20))
    assert _error(big) == (f"cannot read spec {big}: larger than 4 MB, the most xspec reads of "
                           "such a file")


def test_a_huge_sweep_is_refused_before_expansion_naming_its_axes(write_spec, base_spec):
    lrs = ", ".join(f"{i}e-6" for i in range(1, 1001))
    epochs = ", ".join(map(str, range(1, 1001)))
    text = base_spec.replace("lr = [1e-5, 2e-5]\nepochs = 2", f"lr = [{lrs}]\nepochs = [{epochs}]")
    assert _error(write_spec(text)).endswith(
        "sweep of 1,000,000 points: clean.epochs (1,000) x clean.lr (1,000); at most 100,000 "
        "points (XSPEC_MAX_SWEEP raises the cap); sweep fewer values")


def test_deep_nesting_is_a_spec_error_not_a_recursion_error(write_spec, base_spec):
    for depth in (40, 2000):
        text = base_spec + "notes = " + "[" * depth + "]" * depth + "\n"
        assert "nest" in _error(write_spec(text))


def test_a_class_list_from_any_file_is_never_printed(write_spec, base_spec, tmp_path):
    secret = tmp_path / "env"
    secret.write_text("API_KEY=hunter2\nOTHER=x\n")
    text = base_spec.replace('eval = { format = "fashion_mnist", split = "test", size = 64 }',
                             f'eval = {{ format = "imagefolder", path = "{tmp_path}", '
                             f'classes = "{secret}" }}')
    message = _error(write_spec(text))
    assert "hunter2" not in message and "OTHER" not in message
    assert message.endswith(f"attack.target: 'bag' is not a class of the evaluation set "
                            f"(2 classes listed in {secret})")


def test_duplicate_class_names_are_refused_naming_the_lines(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n\ncat\n")
    with pytest.raises(SpecError) as info:
        read_classes(str(classes))
    assert str(info.value) == (f"class list {classes}: lines 1 and 4 name the same class; "
                               "each class once")


def test_nested_default_expands(write_spec, base_spec, monkeypatch):
    monkeypatch.delenv("XSPEC_T_A", raising=False)
    monkeypatch.setenv("XSPEC_T_B", "from-b")
    text = base_spec.replace('name = "t"', 'name = "${XSPEC_T_A:-${XSPEC_T_B}}-${XSPEC_T_A:-x}"')
    assert load_spec(write_spec(text)).study == "from-b-x"
