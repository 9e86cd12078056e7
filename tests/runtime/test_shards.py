"""WebDataset shards: brace patterns, `xspec data pack`, pairs read by key from the tars, loader
batches identical across worker counts, data check, and a mini study end to end on shards."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from xspec.cli import app
from xspec.errors import DataError
from xspec.runtime.data import open_pairs, pair_captions
from xspec.runtime.pack import pack
from xspec.tarindex import declared_size, expand_braces, shard_paths

MINI = Path(__file__).resolve().parents[2] / "specs" / "toy" / "mini.toml"
FASHION = {"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist", "split": "train",
           "size": 40}


def test_brace_patterns_expand_in_order_with_their_padding():
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    assert expand_braces("plain/{x}.tar") == ["plain/{x}.tar"]


@pytest.fixture(scope="module")
def fashion_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    return out, pack(FASHION, out, shard_size=16)


def test_pack_writes_img2dataset_shards_that_read_back_as_the_same_pairs(fashion_shards):
    out, packed = fashion_shards
    assert (packed.shards, packed.samples, packed.skipped) == (3, 40, 0)
    assert packed.pattern == str(out / "{00000..00002}.tar")
    paths = shard_paths(packed.pattern)
    assert [Path(p).name for p in paths] == ["00000.tar", "00001.tar", "00002.tar"]
    assert declared_size(paths) == 40
    assert json.loads((out / "00002_stats.json").read_text())["successes"] == 8
    pairs = open_pairs({"format": "webdataset", "path": packed.pattern}, 28)
    assert list(pairs.captions) == list(pair_captions(FASHION))
    assert pairs.keys[17] == "000000017"
    kept, images = pairs.images.load([0, 17, 39])
    reference = open_pairs(FASHION, 28).images.pixels[[0, 17, 39]]
    assert kept == [0, 17, 39] and torch.equal(images, reference)  # PNG: lossless, same size
    limited = open_pairs({"format": "webdataset", "path": packed.pattern, "size": 20}, 28)
    assert len(limited.captions) == 20 and limited.keys[19] == "000000019"


def test_csv_images_are_packed_as_their_file_bytes(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["image,caption"]
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.jpg")
        rows.append(f"{i}.jpg,photo {i}")
    rows.append("missing.jpg,gone")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    csv_cfg = {"format": "csv", "path": str(tmp_path / "pairs.csv"), "image_key": "image",
               "caption_key": "caption"}
    packed = pack(csv_cfg, tmp_path / "out", shard_size=100)
    assert (packed.shards, packed.samples, packed.skipped) == (1, 5, 1)
    shards = open_pairs({"format": "webdataset", "path": packed.pattern}, 24)
    files = open_pairs(csv_cfg, 24)
    assert torch.equal(shards.images.load(range(5))[1], files.images.load(range(5))[1])
    assert list(shards.captions) == list(files.captions)[:5]


def test_shard_errors_name_the_pattern_or_sample(tmp_path):
    with pytest.raises(DataError, match="no shard matches"):
        open_pairs({"format": "webdataset", "path": str(tmp_path / "*.tar")}, 16)
    (tmp_path / "00000.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(DataError, match="00000.tar: not a readable tar file"):
        open_pairs({"format": "webdataset", "path": str(tmp_path / "00000.tar")}, 16)


def test_loader_batches_on_shards_are_identical_with_0_and_2_workers(fashion_shards):
    from xspec.runtime import models
    from xspec.runtime.attacks import make_attack
    from xspec.runtime.augment import SslAugmenter
    from xspec.runtime.pipeline import Normalizer, TrainingData

    pairs = open_pairs({"format": "webdataset", "path": fashion_shards[1].pattern}, 16)
    attack = make_attack({"kind": "badnet", "target": "bag", "poisons": 4,
                          "trigger": {"size": 4, "pattern": "gaussian_per_image",
                                      "location": "random"}}, 0)
    poisoned = np.zeros(40, bool)
    poisoned[attack.select(pairs.captions)] = True

    def batches(workers):
        data = TrainingData(pairs, np.arange(40), pairs.captions, poisoned, attack,
                            models.tokenizer("xspec-vit-micro"), Normalizer.of((0.5,) * 3, (0.5,) * 3),
                            8, 0, {"image", "text", "image_aug", "text_aug"}, SslAugmenter(None),
                            workers)
        return [b for epoch in (1, 2) for b in data.batches(epoch)]

    for got, want in zip(batches(2), batches(0), strict=True):
        assert all(torch.equal(got[k], want[k]) for k in want)


def _shard_spec(tmp_path, pattern: str) -> Path:
    text = MINI.read_text().replace('train = { format = "fashion_mnist", size = 256 }',
                                    f'train = {{ format = "webdataset", path = "{pattern}" }}')
    text = text.replace('name = "mini"', 'name = "mini-shards"')
    spec = tmp_path / "shards.toml"
    spec.write_text(text)
    return spec


@pytest.mark.slow
def test_mini_study_runs_end_to_end_on_shards(tmp_path):
    from xspec.store.workspace import Workspace
    from xspec.study import open_study, run_study

    packed = pack({"format": "fashion_mnist", "split": "train", "size": 256}, tmp_path / "sh",
                  shard_size=100)
    spec = _shard_spec(tmp_path, packed.pattern)
    result = CliRunner().invoke(app, ["data", "check", str(spec)])
    assert result.exit_code == 0, result.output
    assert "256" in result.output
    study, workspace = open_study(spec), Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and len(outcome.ran) == 9
    [poison] = study.plan.of_kind("poison")
    manifest = json.loads((workspace.run_dir(poison).path / "manifest.json").read_text())
    assert len(manifest["poisoned"]) == 16
    assert all(e["key"] == f"{e['index']:09d}" for e in manifest["poisoned"])
    for node in study.plan.of_kind("clean"):
        rows = pq.read_table(workspace.run_dir(node).metrics_file).to_pylist()
        assert {r["epoch"] for r in rows if r["split"] == "eval"} == {0, 1, 2}
        assert {r["epoch"] for r in rows if r["split"] == "heldout"} == {0, 1, 2}


def test_a_changed_shard_set_is_caught_by_the_manifest_keys(tmp_path, fashion_shards):
    from xspec.runtime.handoffs import read_manifest
    from xspec.store.workspace import RunDir

    pairs = open_pairs({"format": "webdataset", "path": fashion_shards[1].pattern}, 16)
    run = RunDir(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"poisoned": [{"index": 3, "key": "000000003", "caption": "c", "original": "o"}]}))
    assert read_manifest(run, pairs)["poisoned"][0]["key"] == "000000003"
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"poisoned": [{"index": 3, "key": "000000004", "caption": "c", "original": "o"}]}))
    with pytest.raises(DataError, match="the shards changed since poisoning"):
        read_manifest(run, pairs)


def test_cli_pack_prints_the_spec_line(tmp_path):
    result = CliRunner().invoke(app, ["data", "pack", str(tmp_path / "o"), "--fashion-mnist",
                                      "test", "--size", "10", "--shard-size", "4"])
    assert result.exit_code == 0, result.output
    assert "10 pairs in 3 shard(s)" in result.output and "{00000..00002}.tar" in result.output
    bad = CliRunner().invoke(app, ["data", "pack", str(tmp_path / "p")])
    assert bad.exit_code != 0
