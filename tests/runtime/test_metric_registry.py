"""Evaluation metrics come from the registry: the built-ins (top1, top5, asr, asr_top5) and any
a plugin registers, per batch (`reduce="sum"`) or on the whole set (`reduce="whole"`)."""

from pathlib import Path

import pytest
import torch

from xspec.errors import SpecError
from xspec.extend import METRICS, RegistryError, register_metric
from xspec.runtime.evaluate import evaluate
from xspec.runtime.evalview import EvalView
from tests.runtime.test_evaluate import CLASSES, _batches, tiny  # noqa: F401
from xspec.runtime.evaluate import zero_shot_classifier


@pytest.fixture
def restore_metrics():
    saved = METRICS.snapshot()
    yield
    METRICS.restore(saved)


def test_asr_top5_counts_the_target_among_the_five_best():
    # target 0; rows: labels 1, 2, 3, 0 (the last is not eligible)
    logits = torch.tensor([[9., 1, 2, 3, 4, 5, 6],     # target first: top-1 and top-5 hit
                           [5., 1, 9, 8, 7, 6, 0],     # target 5th: top-5 hit only
                           [0., 1, 9, 8, 7, 6, 5],     # target last: no hit
                           [9., 1, 2, 3, 4, 5, 6]])    # true class is the target: not counted
    labels = torch.tensor([1, 2, 3, 0])
    view = EvalView(triggered_logits=logits, labels=labels, target_index=0)
    assert METRICS.get("asr").behaviour(view) == (1, 3)
    assert METRICS.get("asr_top5").behaviour(view) == (2, 3)


def test_evaluate_computes_the_requested_registered_metrics(tiny, restore_metrics):  # noqa: F811
    model, tokenizer = tiny
    classifier = zero_shot_classifier(model, tokenizer, CLASSES, ["a photo of a {}."], "cpu")
    calls = []

    @register_metric("mean_margin", needs=("triggered_logits", "clean_logits", "labels"),
                     reduce="whole")
    def mean_margin(view):
        calls.append(view.clean_logits.shape)
        return float((view.triggered_logits - view.clean_logits).mean()), len(view.labels)

    @register_metric("embedding_norm", needs=("embeddings",))
    def embedding_norm(view):
        return float(view.embeddings.norm(dim=-1).sum()), len(view.embeddings)

    result = evaluate(model, classifier, _batches(), target_index=0,
                      metrics=["top1", "asr_top5", "mean_margin", "embedding_norm"])
    assert set(result) == {"top1", "asr_top5", "mean_margin", "embedding_norm"}
    assert calls == [(15, len(CLASSES))]  # once, on the whole set's 15 images
    assert result["embedding_norm"] == (pytest.approx(1.0), 15)  # normalised features
    assert result["asr_top5"][0] >= evaluate(model, classifier, _batches(), 0)["asr"][0]
    without = evaluate(model, classifier, _batches(), target_index=None,
                       metrics=["top1", "asr_top5", "mean_margin"])
    assert set(without) == {"top1"}  # triggered metrics need a target


def test_register_metric_refuses_unknown_needs(restore_metrics):
    with pytest.raises(RegistryError, match="needs must name some of clean_logits"):
        register_metric("bad", lambda view: (0, 0), needs=("logits",))
    with pytest.raises(RegistryError, match="reduce must be 'sum' or 'whole'"):
        register_metric("bad", lambda view: (0, 0), needs=("labels",), reduce="mean")


def test_evaluate_metrics_are_validated_from_the_registry(tmp_path, monkeypatch):
    import sys

    from xspec.extend.registry import ALL

    saved = [registry.snapshot() for registry in ALL]
    for name in ("frequency_trigger", "isolate_unlearn"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        _check_validation(tmp_path)
    finally:
        for registry, entries in zip(ALL, saved):
            registry.restore(entries)


def _check_validation(tmp_path):
    import shutil

    from xspec.spec.load import load_spec

    example = Path(__file__).resolve().parents[2] / "examples" / "plugins"
    for name in ("study.toml", "frequency_trigger.py", "isolate_unlearn.py"):
        shutil.copy(example / name, tmp_path / name)
    spec = tmp_path / "study.toml"
    text = spec.read_text().replace("[evaluate]\n", "[evaluate]\nmetrics = [\"top1\", \"asr_top6\"]\n")
    spec.write_text(text)
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert str(error.value).endswith(
        "evaluate.metrics[1]: unknown metric 'asr_top6'; allowed: asr, asr_top5, top1, top5")
    spec.write_text(text.replace("asr_top6", "asr_top5"))
    assert load_spec(spec).first.evaluate.metrics == ["top1", "asr_top5"]
