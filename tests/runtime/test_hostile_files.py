"""Hostile or damaged files met while running (issue 19): a decompression-bomb image is a bad
image, a damaged last.pt or metrics.parquet is named and the node computes its rows again, a
truncated upstream checkpoint is called truncated."""

import io

import pytest
import torch
from PIL import Image

from xspec.errors import DataError
from xspec.runtime.data import FileImages
from xspec.runtime.records import MetricsLog, load_checkpoint, save_checkpoint


def test_a_decompression_bomb_is_counted_as_a_bad_image(tmp_path, monkeypatch):
    paths = []
    for name, side in (("ok.png", 16), ("bomb.png", 200)):
        Image.new("RGB", (side, side), "red").save(tmp_path / name)
        paths.append(str(tmp_path / name))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 200 x 200 is past twice the limit
    kept, pixels = FileImages(paths, 8, "skip").load([0, 1])
    assert kept == [0] and pixels.shape == (1, 3, 8, 8)
    with pytest.raises(DataError, match="bomb.png: Image size .* exceeds limit"):
        FileImages(paths, 8, "fail").load([0, 1])


def _truncated(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(2000)}, "epoch": 1})
    path.write_bytes(path.read_bytes()[:1500])
    return path


def test_a_truncated_checkpoint_is_named_as_truncated(tmp_path):
    path = _truncated(tmp_path)
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"checkpoint {path} is truncated or damaged (1,500 bytes, not a "
                               "complete torch file)")


def test_a_truncated_upstream_checkpoint_is_not_called_unsafe(tmp_path):
    from xspec.runtime.models import load_state_dict

    path = _truncated(tmp_path)
    with pytest.raises(DataError) as info:
        load_state_dict(path)
    assert "refused to load with weights_only" not in str(info.value)
    assert str(info.value).startswith(f"checkpoint {path} is truncated or damaged")


def test_a_damaged_metrics_file_is_named_or_set_aside(tmp_path):
    path = tmp_path / "metrics.parquet"
    path.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match=f"{path} is unreadable"):
        MetricsLog(path, "n")
    log = MetricsLog(path, "n", damaged_ok=True)
    assert log.rows == [] and log.lost.startswith(f"{path} is unreadable")
    assert (tmp_path / "metrics.parquet.damaged").exists() and not path.exists()


class _Ctx:
    def __init__(self):
        self.lines = []

    def log(self, line):
        self.lines.append(line)


def _log_with(tmp_path, epochs):
    log = MetricsLog(tmp_path / "metrics.parquet", "n")
    for epoch in epochs:
        log.add(epoch, "train", "loss", 1.0)
        log.add(epoch, "eval", "top1", 0.5)
    log.flush()
    return MetricsLog(tmp_path / "metrics.parquet", "n", damaged_ok=True)


@pytest.mark.parametrize("kept, resumes", [([1, 2], True), ([1], False), ([], False)])
def test_resume_only_when_the_metrics_of_every_trained_epoch_are_there(tmp_path, kept, resumes):
    from xspec.runtime.resume import resumable

    last = tmp_path / "last.pt"
    save_checkpoint(last, {"epoch": 2, "step": 8, "metrics_rows": 4})
    ctx = _Ctx()
    saved = resumable(ctx, last, _log_with(tmp_path, kept))
    assert (saved is not None) == resumes and last.exists() == resumes
    if not resumes:
        assert "starting again from the beginning to compute them" in ctx.lines[0]


def test_a_damaged_last_pt_is_named_and_set_aside(tmp_path):
    from xspec.runtime.resume import resumable

    last = _truncated(tmp_path)
    ctx = _Ctx()
    assert resumable(ctx, last, _log_with(tmp_path, [1])) is None
    assert ctx.lines[0].startswith(f"checkpoint {last} is truncated or damaged")
    assert (tmp_path / "last.pt.damaged").exists() and not last.exists()
