"""Plans read well: each fact once under its short name; and say what they will cost."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.compiler.estimate import estimate, rates
from xspec.compiler.naming import show
from xspec.study import open_study

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_one_fact_seen_under_several_prefixes_is_named_once():
    plan = open_study(SPECS / "table2.toml").plan
    names = [n.name for n in plan.of_kind("pretrain")]
    assert "pretrain@poisons=1500,batch_size=2048,objective=mmcl,train.path=/data/cc3m/train.csv" in (
        names)
    clean = {f.name: f.keys for f in plan.facts["clean"]}
    assert clean["poisons"] == ("clean.attack.poisons", "poison.poisons",
                                "pretrain.attack.poisons")
    assert {"lr", "objective", "pretrain.objective", "policy"} <= set(clean)
    for kind in plan.facts:
        assert len({n.name for n in plan.of_kind(kind)}) == len(plan.of_kind(kind))


@pytest.mark.parametrize("value, text", [(1e-4, "1e-4"), (1.5e-4, "1.5e-4"), (0.1, "0.1"),
                                         (5e-9, "5e-9"), (3, "3"), ("mmcl+ssl", "mmcl+ssl"),
                                         ([0.5, 1e-3], "[0.5, 1e-3]")])
def test_values_show_as_written(value, text):
    assert show(value) == text


def test_estimate_counts_pairs_epochs_views_and_evaluations(write_spec, base_spec):
    plan = open_study(write_spec(base_spec)).plan  # xspec-vit-micro: a CPU-only rate
    cost = estimate(plan)
    rate = rates()[("xspec-vit-micro", "cpu")]
    train, evaluate = rate["train_per_s"], rate["eval_per_s"]
    assert cost.device == "cpu" and cost.unit == "CPU-min"
    # pre-training: 256 pairs x 2 epochs, MMCL; 64 images x 2 (ASR) after each of 2 epochs
    assert cost.kinds["pretrain"].seconds == pytest.approx(256 * 2 / train + 64 * 2 * 2 / evaluate)
    # cleaning (MMCL+SSL: 2 views) of 64 pairs x 2 epochs, evaluated before and after each
    one = 64 * 2 * 2 / train + 64 * 2 * 3 / evaluate
    assert cost.kinds["clean"].seconds == pytest.approx(2 * one)
    assert cost.kinds["poison"].seconds == cost.kinds["select"].seconds == 0
    assert cost.total == pytest.approx(sum(c.seconds for c in cost.kinds.values()))


def test_gpu_estimate_names_its_gpu_and_what_it_cannot_count(write_spec, base_spec):
    text = base_spec.replace('"xspec-vit-micro"', '"RN50"').replace(
        'train = { format = "fashion_mnist", size = 256 }',
        'train = { format = "csv", path = "missing.csv" }')
    cost = estimate(open_study(write_spec(text)).plan)
    assert cost.unit == "GPU-h (A100)"
    assert cost.kinds["pretrain"].unknown == [
        f"{Path(text and write_spec(text)).parent / 'missing.csv'} is not readable here: "
        "give its expected_size = N"]
    assert "OpenCLIP" in cost.sources["RN50"] or "ViT-B-32" in cost.sources["RN50"]
    assert estimate(open_study(write_spec(text)).plan, gpu="T4").kinds["clean"].unknown == [
        "no T4 rate for RN50 (known: )"]


def test_expected_size_counts_data_not_staged_here_and_keeps_node_ids(write_spec, base_spec):
    text = base_spec.replace('"xspec-vit-micro"', '"RN50"').replace(
        'train = { format = "fashion_mnist", size = 256 }',
        'train = { format = "csv", path = "missing.csv" }')
    hinted = text.replace('path = "missing.csv" }', 'path = "missing.csv", expected_size = 3000 }')
    plain, with_size = open_study(write_spec(text)).plan, open_study(write_spec(hinted)).plan
    assert sorted(plain.nodes) == sorted(with_size.nodes)  # an estimate hint, not data
    cost = estimate(with_size)
    assert cost.kinds["pretrain"].unknown == [] and cost.kinds["pretrain"].seconds > 0
    rate = rates()[("RN50", "A100")]
    evals = 64 * 2 * 2 / rate["eval_per_s"]  # 64 images x 2 (ASR) after each of 2 epochs
    assert cost.kinds["pretrain"].seconds == pytest.approx(3000 * 2 / rate["train_per_s"] + evals)


def test_plan_groups_by_kind_and_json_carries_the_estimate():
    result = CliRunner().invoke(app, ["plan", str(SPECS / "quickstart.toml")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("clean") and "6 nodes" in line and "CPU-min" in line
               for line in lines)
    assert any(line.split() == ["lr", "5e-4,", "2e-3,", "5e-3"] for line in lines)
    assert "11 nodes: 11 pending; compute ~" in result.output
    data = json.loads(CliRunner().invoke(app, ["plan", str(SPECS / "quickstart.toml"),
                                               "--json"]).output)
    assert data["kinds"]["clean"]["varies"] == {"lr": ["5e-4", "2e-3", "5e-3"],
                                               "pretrain.objective": ["mmcl", "mmcl+ssl"]}
    assert data["estimate"]["unit"] == "CPU-min" and data["estimate"]["complete"]
    assert len(data["nodes"]) == 11 and "config" in data["nodes"][0]
