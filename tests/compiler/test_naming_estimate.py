"""Plans read well: each fact once under its short name; and say what they will cost."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.compiler.estimate import estimate, overheads, rates
from xspec.compiler.naming import show
from xspec.study import open_study

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_one_fact_seen_under_several_prefixes_is_named_once():
    plan = open_study(SPECS / "table2.toml").plan
    names = [n.name for n in plan.of_kind("pretrain")]
    assert "pretrain@batch_size=2048,objective=mmcl,train.path=/data/cc3m/train.csv,poisons=1500" in (
        names)
    clean = {f.name: f.key for f in plan.facts["clean"]}
    assert clean["poisons"] == "poison.poisons"  # the attack is the poison config's alone
    assert {"lr", "objective", "pretrain.objective", "policy"} <= set(clean)
    for kind in plan.facts:
        assert len({n.name for n in plan.of_kind(kind)}) == len(plan.of_kind(kind))


@pytest.mark.parametrize("value, text", [(1e-4, "1e-4"), (1.5e-4, "1.5e-4"), (0.1, "0.1"),
                                         (5e-9, "5e-9"), (3, "3"), ("mmcl+ssl", "mmcl+ssl"),
                                         ([0.5, 1e-3], "[0.5, 1e-3]")])
def test_values_show_as_written(value, text):
    assert show(value) == text


def test_estimate_counts_pairs_steps_evaluations_and_fixed_costs(write_spec, base_spec):
    plan = open_study(write_spec(base_spec)).plan  # xspec-vit-micro: a CPU-only rate
    cost = estimate(plan, threads=1)
    rate, fixed = rates()[("xspec-vit-micro", "cpu")], overheads("cpu")
    train, step = rate["train_per_s"], rate["step_s"]
    assert cost.device == "cpu" and cost.unit == "CPU-min"
    # one evaluation: 64 images x 2 (ASR) and the classifier's 10 classes x 80 templates
    evaluation = 64 * 2 / rate["eval_per_s"] + 10 * 80 / rate["caption_per_s"]
    process = fixed["process_s"]
    # pre-training: 256 pairs x 2 epochs, MMCL, in batches; evaluated after each of 2 epochs
    batch = plan.of_kind("pretrain")[0].identity["batch_size"]
    steps = 2 * -(-256 // batch)
    assert cost.kinds["pretrain"].seconds == pytest.approx(
        256 * 2 / train + steps * step + 2 * evaluation + process + fixed["setup_s"]["pretrain"])
    # cleaning (MMCL+SSL: 2 views) of 64 pairs x 2 epochs, evaluated before and after each
    batch = plan.of_kind("clean")[0].identity["batch_size"]
    one = 64 * 2 * 2 / train + 2 * -(-64 // batch) * step + 3 * evaluation
    assert cost.kinds["clean"].seconds == pytest.approx(
        2 * (one + process + fixed["setup_s"]["clean"]))
    assert cost.kinds["poison"].seconds == cost.kinds["select"].seconds == process
    assert cost.runner == fixed["runner_s"] + fixed["runner_per_node_s"] * len(plan.nodes)
    assert cost.total == pytest.approx(sum(c.seconds for c in cost.kinds.values()) + cost.runner)


def test_cpu_estimate_with_several_threads_counts_their_waiting(write_spec, base_spec):
    plan = open_study(write_spec(base_spec)).plan
    one, default = estimate(plan, threads=1), estimate(plan)
    multi = rates()[("xspec-vit-micro", "cpu")]["multi_thread"]
    assert multi["step_s"] > rates()[("xspec-vit-micro", "cpu")]["step_s"]
    assert default.kinds["clean"].seconds > one.kinds["clean"].seconds
    assert default.kinds["poison"].seconds == one.kinds["poison"].seconds  # no torch work


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


def test_every_toy_twin_has_a_complete_estimate():
    """bench/bench_estimate_measured.py sets these against measured CPU time."""
    for spec in sorted((SPECS / "toy").glob("*.toml")) + sorted(
            (SPECS / "baselines" / "toy").glob("*.toml")):
        study = open_study(spec)
        cost = estimate(study.plan, device="cpu", threads=study.spec.run.threads)
        assert not [u for c in cost.kinds.values() for u in c.unknown], spec
        assert all(c.seconds > 0 for c in cost.kinds.values()), spec
