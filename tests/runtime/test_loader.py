"""Per-sample work in loader workers: batches and evaluation batches are bit-identical whatever
the number of workers, workers persist across epochs, and an epoch's batches survive a resume."""

import numpy as np
import pytest
import torch
from PIL import Image

from xspec.runtime import models
from xspec.runtime.attacks import make_attack
from xspec.runtime.augment import SslAugmenter
from xspec.runtime.data import open_eval, open_pairs
from xspec.runtime.pipeline import Normalizer, TrainingData, eval_batches, eval_loader

N, SIZE = 24, 32
ATTACK = {"kind": "badnet", "target": "trouser", "poisons": 6,
          "trigger": {"size": 6, "pattern": "gaussian_per_image", "location": "random"}}


@pytest.fixture(scope="module")
def jpeg_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    rows = ["image,caption,label"]
    for i in range(N):
        pixels = rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.jpg", quality=90)
        rows.append(f"{i}.jpg,a photo of thing number {i} on a table,{i % 10}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root / "pairs.csv"


def _data(path, workers: int) -> TrainingData:
    pairs = open_pairs({"format": "csv", "path": str(path), "image_key": "image",
                        "caption_key": "caption"}, SIZE)
    attack = make_attack(ATTACK, 0)
    captions, poisoned = list(pairs.captions), np.zeros(N, dtype=bool)
    for i in attack.select(captions):
        captions[i], poisoned[i] = attack.poison_caption(int(i), captions[i]), True
    return TrainingData(pairs, np.arange(N), captions, poisoned, attack,
                        models.tokenizer("xspec-vit-micro"), Normalizer.of((0.5,) * 3, (0.25,) * 3),
                        8, 0, {"image", "text", "image_aug", "text_aug"}, SslAugmenter(None),
                        workers)


def _epochs(data: TrainingData, epochs=(1, 2)) -> list[dict]:
    return [b for e in epochs for b in data.batches(e)]


def test_batches_are_identical_with_0_1_and_2_workers(jpeg_csv):
    reference = _epochs(_data(jpeg_csv, 0))
    assert len(reference) == 6 and reference[0]["image"].dtype == torch.float32
    assert any(b["image_aug"].shape == b["image"].shape for b in reference)
    for workers in (1, 2):
        batches = _epochs(_data(jpeg_csv, workers))
        assert len(batches) == len(reference)
        for got, want in zip(batches, reference):
            assert got.keys() == want.keys()
            for key in want:
                assert torch.equal(got[key], want[key]), (workers, key)


def test_workers_persist_across_epochs_and_resume_repeats_an_epoch(jpeg_csv):
    data = _data(jpeg_csv, 2)
    first = _epochs(data, (1,))
    pids = {w.pid for w in data.loader._loader._iterator._workers}
    second = _epochs(data, (2,))
    assert {w.pid for w in data.loader._loader._iterator._workers} == pids
    assert not torch.equal(first[0]["index"], second[0]["index"])
    again = _epochs(_data(jpeg_csv, 1), (2,))  # a resumed run starting at epoch 2
    assert all(torch.equal(a["image_aug"], b["image_aug"]) for a, b in zip(again, second))


def test_raw_batches_carry_uint8_images_and_triggered_pairs_differ(jpeg_csv):
    data = _data(jpeg_csv, 0)
    batch = next(data.raw_batches(1))
    assert batch["image"].dtype == torch.uint8 and batch["image_aug"].dtype == torch.uint8
    clean = data.pairs.images.load(batch["index"].tolist())[1]
    changed = (batch["image"] != clean).flatten(1).any(1)
    assert changed.tolist() == data.poisoned[batch["index"].numpy()].tolist()


def test_evaluation_batches_are_identical_with_0_and_2_workers(jpeg_csv):
    data = open_eval({"format": "labels_csv", "path": str(jpeg_csv), "image_key": "image",
                      "label_key": "label", "classes": "fashion_mnist"}, SIZE)
    attack, normalize = make_attack(ATTACK, 0), Normalizer.of((0.5,) * 3, (0.25,) * 3)
    out = {}
    for workers in (0, 2):
        loader = eval_loader(data, attack, True, workers, normalize=normalize)  # CPU: workers
        assert (loader.recipe.normalize is not None) == (workers > 0)  # normalise with 2
        out[workers] = [list(eval_batches(data, attack, normalize, 10, True, loader=loader))
                        for _ in range(2)]
    assert len(out[0][0]) == 3
    for run in (0, 1):
        for got, want in zip(out[2][run], out[0][0]):
            assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_cpu_runs_with_workers_leave_the_workers_their_cores():
    import os

    from xspec.runtime.node import configure_process

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        configure_process({"device": "cpu", "workers": 1})
        assert torch.get_num_threads() == max(1, cores - 1)
        configure_process({"device": "cpu", "workers": 1, "threads": 3})
        assert torch.get_num_threads() == 3  # an explicit run.threads wins
    finally:
        torch.set_num_threads(before)
