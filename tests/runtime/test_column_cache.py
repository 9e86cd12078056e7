"""A large pairs CSV's columns come from cache files written once: the same rows as reading it
into memory, the caption bytes read from the page cache (never mapped), the same errors."""

import os
from pathlib import Path

import pytest

from xspec.errors import DataError
from xspec.runtime import column_cache
from xspec.runtime.data import open_pairs
from xspec.runtime.formats import csv_pairs


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(csv_pairs, "MAPPED_ABOVE", 0)
    monkeypatch.setattr(column_cache, "BLOCK", 1 << 10)  # many blocks: the scan crosses them
    return tmp_path / "cache" / "xspec" / "columns"


def _csv(path: Path, rows: int, empty_at: int | None = None) -> dict:
    lines = ["image,caption"] + [f"img/{i}.jpg,\"a photo, number {i}\"" for i in range(rows)]
    if empty_at is not None:
        lines[empty_at + 1] = f"img/{empty_at}.jpg,  "
    path.write_text("\n".join(lines) + "\n")
    return {"format": "csv", "path": str(path), "image_key": "image", "caption_key": "caption"}


def _mapped_files() -> set[str]:
    return {line.split()[5] for line in Path("/proc/self/maps").read_text().splitlines()
            if len(line.split()) > 5}


def test_cached_columns_equal_the_in_memory_read_and_are_read_from_the_cache_file(tmp_path,
                                                                                  cached):
    cfg = _csv(tmp_path / "pairs.csv", 3000)
    mapped = open_pairs(cfg, 32)
    files = sorted(cached.glob("*.utf8"))
    assert len(files) == 2 and len(list(cached.glob("*.json"))) == 1
    captions = mapped.captions
    assert captions.paths == (str(files[1].with_suffix(".offsets")), str(files[1]))
    assert captions[17] == "a photo, number 17"
    assert not {str(f) for f in cached.iterdir()} & _mapped_files()  # read, never mapped
    written = files[0].stat().st_mtime_ns
    again = open_pairs(cfg, 32)  # mapped, not converted again
    assert files[0].stat().st_mtime_ns == written
    csv_pairs.MAPPED_ABOVE = 1 << 62
    try:
        plain = open_pairs(cfg, 32)
    finally:
        csv_pairs.MAPPED_ABOVE = 0
    assert list(again.captions) == list(plain.captions) == list(captions)
    assert list(mapped.images.paths) == list(plain.images.paths)
    assert captions[2999] == "a photo, number 2999"


def test_a_changed_csv_is_converted_again(tmp_path, cached):
    cfg = _csv(tmp_path / "pairs.csv", 50)
    assert len(open_pairs(cfg, 32).captions) == 50
    _csv(tmp_path / "pairs.csv", 70)
    os.utime(tmp_path / "pairs.csv", ns=(1, 10**18))
    assert len(open_pairs(cfg, 32).captions) == 70
    assert len(list(cached.glob("*.json"))) == 2


def test_empty_captions_are_found_within_the_rows_used(tmp_path, cached):
    cfg = _csv(tmp_path / "pairs.csv", 2000, empty_at=1500)
    with pytest.raises(DataError, match="line 1502: empty caption"):
        open_pairs(cfg, 32)
    assert len(open_pairs({**cfg, "size": 1500}, 32).captions) == 1500  # the row is not used


def test_an_unwritable_cache_falls_back_to_reading_into_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file: no folder can be made there
    monkeypatch.setattr(csv_pairs, "MAPPED_ABOVE", 0)
    cfg = _csv(tmp_path / "pairs.csv", 10)
    assert list(open_pairs(cfg, 32).captions)[9] == "a photo, number 9"


def test_the_node_process_neither_converts_nor_imports_pyarrow(tmp_path):
    """The CSV is converted in a child process; opening the cache maps numpy files. So neither
    Arrow's CSV buffers nor pyarrow's libraries land in the process that trains."""
    import subprocess
    import sys

    cfg = _csv(tmp_path / "pairs.csv", 500, empty_at=None)
    probe = (
        "import json, sys\n"
        "from xspec.runtime.formats import csv_pairs\n"
        "csv_pairs.MAPPED_ABOVE = 0\n"
        "from xspec.runtime.data import open_pairs\n"
        f"pairs = open_pairs({cfg!r}, 32)\n"
        "print(json.dumps([len(pairs.captions), pairs.captions[499], pairs.images.paths[7],\n"
        "                  'pyarrow' in sys.modules]))\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for _ in range(2):  # the first open converts (in a child), the second maps
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                             text=True, check=True).stdout
        rows, last, seventh, imported = __import__("json").loads(out)
        assert (rows, last, imported) == (500, "a photo, number 499", False)
        assert seventh == str(tmp_path / "img" / "7.jpg")
    assert len(list((tmp_path / "cache" / "xspec" / "columns").glob("*.json"))) == 1


def test_a_csv_arrow_cannot_parse_is_named_by_the_in_memory_reader(tmp_path, cached):
    (tmp_path / "bad.csv").write_text("image,caption\nx.jpg,fine\ny.jpg,too,many\n")
    cfg = {"format": "csv", "path": str(tmp_path / "bad.csv"), "image_key": "image",
           "caption_key": "caption"}
    with pytest.raises(DataError, match="bad.csv"):
        open_pairs(cfg, 32)
    assert not list(cached.glob("*.json"))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_a_scan_of_a_mapped_column_does_not_hold_all_of_it(tmp_path, cached):
    """Reading every caption in order (an attack that looks for captions naming its target does)
    passes the column through block by block: the peak grows by about a block, not by the
    column (before: a Python int per row in two lists, and every page of the file mapped)."""
    cfg = _csv(tmp_path / "pairs.csv", 400_000)
    captions = open_pairs(cfg, 32).captions
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    found = sum(1 for caption in captions if caption.endswith("99"))
    added = _status("VmHWM") - before
    assert found == 4_000
    assert added < 16e6, f"the scan added {added / 1e6:.0f} MB to the peak"
    assert captions[399_999] == "a photo, number 399999"


def test_random_rows_do_not_grow_the_process(tmp_path, cached):
    """A loader worker reads rows in random order for an epoch. Read from the page cache, they
    add nothing to its resident set (memory-mapped, each row read mapped the 64 KB around it:
    a worker grew towards the whole index)."""
    import numpy as np

    cfg = _csv(tmp_path / "pairs.csv", 400_000)
    pairs = open_pairs(cfg, 32)
    rows = np.random.default_rng(0).choice(400_000, 20_000, replace=False)
    before = _status("RssFile")
    read = [(pairs.captions[i], pairs.images.paths[i]) for i in rows.tolist()]
    assert read[0] == (f"a photo, number {rows[0]}", str(tmp_path / "img" / f"{rows[0]}.jpg"))
    assert _status("RssFile") - before < 2e6
