"""[detect]: one detect node per selected pre-trained model, after the select and poison nodes;
each detector's version and settings in its id, nothing else's id moved."""

import pytest

from xspec.compiler.estimate import estimate
from xspec.compiler.plan import compile_spec
from xspec.errors import XspecError
from xspec.spec.load import load_spec

DETECT = "\n[detect]\nbatch_size = 512\n[detect.k_distance]\n[detect.lid]\nk = 32\n"


def _plan(write_spec, text, name="spec.toml"):
    return compile_spec(load_spec(write_spec(text, name)))


def test_one_detect_node_per_selected_model(write_spec, base_spec):
    two = base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "mmcl+ssl"]', 1)
    plan = _plan(write_spec, two + DETECT)
    detects = plan.of_kind("detect")
    assert len(detects) == 2
    for node in detects:
        assert sorted(plan.nodes[d].kind for d in node.deps) == ["poison", "select"]
        assert node.identity["detectors"] == {"k_distance": {"k": 16}, "lid": {"k": 32}}
        assert node.identity["plugins"] == {"detector:k_distance": "1", "detector:lid": "1"}
        assert node.identity["batch_size"] == 512


def test_detect_adds_nodes_and_moves_no_other_id(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec + DETECT, "b.toml")
    assert set(before.nodes) < set(after.nodes)
    assert {after.nodes[i].kind for i in set(after.nodes) - set(before.nodes)} == {"detect"}
    changed = _plan(write_spec, base_spec + DETECT.replace("k = 32", "k = 33"), "c.toml")
    assert set(changed.nodes) - set(after.nodes) == {changed.of_kind("detect")[0].id}


def test_a_detector_version_is_in_the_id(write_spec, base_spec, monkeypatch):
    import dataclasses

    from xspec.extend.registry import DETECTORS

    first = _plan(write_spec, base_spec + DETECT, "a.toml").of_kind("detect")[0].id
    bumped = dataclasses.replace(DETECTORS.get("lid"), version="2")
    monkeypatch.setitem(DETECTORS._entries, "lid", bumped)
    assert _plan(write_spec, base_spec + DETECT, "b.toml").of_kind("detect")[0].id != first


@pytest.mark.parametrize("text,expected", [
    ("\n[detect]\n[detect.k_distanse]\n", "detect.k_distanse"),
    ("\n[detect]\n[detect.lid]\nk = 0\n", "detect.lid.k"),
    ("\n[detect]\nbatch_size = 512\n", "name at least one detector"),
])
def test_bad_detect_tables_name_the_key(write_spec, base_spec, text, expected):
    with pytest.raises(XspecError) as info:
        _plan(write_spec, base_spec + text)
    assert expected in str(info.value)


def test_the_estimate_counts_detection(write_spec, base_spec):
    plan = _plan(write_spec, base_spec + DETECT + "[detect.cognitive_distillation]\n")
    cost = estimate(plan, device="cpu").kinds["detect"]
    assert cost.nodes == 1 and cost.seconds > 0 and not cost.unknown


RETRAIN = DETECT + "[detect.retrain]\ndetector = \"lid\"\ndrop = 0.05\n"


def test_retrain_is_a_pretrain_node_after_the_detect_node(write_spec, base_spec):
    plan = _plan(write_spec, base_spec + RETRAIN)
    first, retrained = sorted(plan.of_kind("pretrain"), key=lambda n: n.config.drop is not None)
    detect = plan.of_kind("detect")[0]
    assert sorted(plan.nodes[d].kind for d in retrained.deps) == ["detect", "poison"]
    assert detect.id in retrained.deps
    assert retrained.identity == {**first.identity, "drop": {"detector": "lid", "drop": 0.05}}
    selects = [n for n in plan.of_kind("select") if retrained.id in n.deps]
    assert len(selects) == 1 and selects[0].config.policy == "best_accuracy"
    order = [n.id for n in plan.ordered()]  # executors run in this order
    assert order.index(detect.id) < order.index(retrained.id) < order.index(selects[0].id)


def test_retrain_moves_no_other_id_and_its_id_follows_the_detector(write_spec, base_spec):
    without = _plan(write_spec, base_spec + DETECT, "a.toml")
    plan = _plan(write_spec, base_spec + RETRAIN, "b.toml")
    added = {plan.nodes[i].kind for i in set(plan.nodes) - set(without.nodes)}
    assert set(without.nodes) < set(plan.nodes) and added == {"pretrain", "select"}
    bumped = _plan(write_spec, base_spec + RETRAIN.replace("k = 32", "k = 31"), "c.toml")
    retrained = [n for n in bumped.of_kind("pretrain") if n.config.drop is not None]
    assert retrained[0].id not in plan.nodes  # other scores, another retrained model


@pytest.mark.parametrize("text,expected", [
    ('[detect.retrain]\ndetector = "dao"\ndrop = 0.1\n', "retrain.detector = 'dao' is not one"),
    ('[detect.retrain]\ndetector = "lid"\ndrop = 1.0\n', "detect.retrain.drop"),
    ('[detect.retrain]\ndetector = "lid"\n', "detect.retrain.drop"),
])
def test_bad_retrain_tables_name_the_key(write_spec, base_spec, text, expected):
    with pytest.raises(XspecError) as info:
        _plan(write_spec, base_spec + DETECT + text)
    assert expected in str(info.value)
