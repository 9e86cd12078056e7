"""A node's lineage shows each spec setting under exactly one key (`xspec.compiler.lineage`),
so plan names and report columns need no guessing which keys are copies of one value."""

import dataclasses
import json
from pathlib import Path

import duckdb
import pytest

from xspec.compiler.plan import compile_spec
from xspec.errors import CompileError
from xspec.reports import load as report
from xspec.spec.load import load_spec
from tests_support import registries_kept  # conftest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in [
    *ROOT.glob("specs/**/*.toml"), *ROOT.glob("examples/**/*.toml")])
MARK = 918_273  # a value no shipped spec uses: each key that holds it is a copy of the change


@pytest.fixture(scope="module", autouse=True)
def _forget_plugins():
    """The plugins register into process-wide registries: undo that for the tests after these."""
    with registries_kept():
        yield


def _seed(spec):
    return spec.model_copy(update={"study": spec.study.model_copy(update={"seed": MARK})})


def _train(spec):
    data = spec.data.model_copy(update={"train": spec.data.train.model_copy(
        update={"size": MARK})})
    return spec.model_copy(update={"data": data})


def _eval(spec):
    data = spec.data.model_copy(update={"eval": spec.data.eval.model_copy(
        update={"size": MARK})})
    return spec.model_copy(update={"data": data})


def _poisons(spec):
    if not hasattr(spec.attack, "poisons"):
        return spec
    return spec.model_copy(update={"attack": spec.attack.model_copy(update={"poisons": MARK})})


def _holding(plan, kind, name):
    """{node id: (the lineage keys holding MARK, how many should)} for this study's nodes of
    `kind`; a node whose attack has no poison count (kind "none") holds none."""
    return {n.id: (sorted(k for k, v in n.lineage.items() if v == MARK),
                   0 if name == "poisons" and "poison.poisons" not in n.lineage else 1)
            for n in plan.own() if n.kind == kind}


@pytest.mark.parametrize("path", SHIPPED)
def test_each_setting_of_a_shipped_spec_is_one_lineage_key(path):
    """Changing one spec value (the seed, the training pairs, the evaluation set, the attack's
    poison count) changes exactly one key in the lineage of every cleaning and pre-training
    node: no setting is shown twice, however many node configs copy it."""
    loaded = load_spec(ROOT / path)
    started = any(spec.clean is not None and spec.clean.start is not None
                  for spec, _ in loaded.variants)
    checked = 0
    for name, change in [("seed", _seed), ("train", _train), ("eval", _eval),
                         ("poisons", _poisons)]:
        changed = dataclasses.replace(loaded, variants=[(change(spec), where)
                                                        for spec, where in loaded.variants])
        if name == "poisons" and changed.variants == loaded.variants:
            continue  # no attack with a poison count
        try:
            plan = compile_spec(changed)
        except CompileError:
            assert started and name in ("train", "poisons")  # must match the started study's
            continue
        for kind in ("pretrain", "clean"):
            for node, (keys, expected) in _holding(plan, kind, name).items():
                if started and (kind == "pretrain" or name in ("train", "poisons")):
                    continue  # the other study's model and pairs: checked in its spec
                assert len(keys) == expected, f"{path}: {name} in {kind} {node[:12]}: {keys}"
                checked += 1
    assert checked or not loaded.variants


def test_the_training_pairs_are_the_poison_nodes_and_the_seed_is_shown_once(
        write_spec, base_spec):
    """A pretrain node's config holds the training pairs and the seed (they are in its id),
    but its lineage shows them once, where the chain first holds them: the poison node."""
    plan = compile_spec(load_spec(write_spec(base_spec)))
    pretrain = plan.of_kind("pretrain")[0]
    assert pretrain.identity["train"]["size"] == 256 and "seed" in pretrain.identity
    assert pretrain.lineage["poison.train.size"] == 256
    assert not [k for k in pretrain.lineage if k.startswith("pretrain.train.")]
    clean = plan.of_kind("clean")[0]
    assert [k for k in clean.lineage if k.endswith(".seed")] == ["poison.seed"]
    assert not [k for k in clean.lineage if k.startswith("clean.eval.")]
    assert clean.lineage["pretrain.eval.source.size"] == 64
    assert clean.identity["eval"]["source"]["size"] == 64  # still the clean node's own config


SWEEP = """
[study]
name = "sweep"
seed = 0

[data]
train = { format = "fashion_mnist", size = [256, 512] }
clean = { size = 64 }
eval = { format = "fashion_mnist", split = "test", size = 64 }

[attack]
kind = "badnet"
target = "bag"
poisons = [16, 32]

[model]
arch = "xspec-vit-micro"

[pretrain]
objective = "mmcl"
epochs = 2

[clean]
lr = 1e-5
epochs = 2
"""


def _columns(plan) -> dict[str, list[str]]:
    """The report's setting columns per kind for a plan's nodes (as if ingested)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE nodes (study VARCHAR, id VARCHAR, kind VARCHAR, name VARCHAR, "
                "config JSON, deps JSON, lineage JSON, status VARCHAR, error VARCHAR, "
                "updated TIMESTAMP)")
    con.execute("CREATE TABLE metrics (node_id VARCHAR, epoch INTEGER, split VARCHAR, "
                "metric VARCHAR, value DOUBLE, n BIGINT, step BIGINT)")
    for n in plan.nodes.values():
        con.execute("INSERT INTO nodes VALUES (?, ?, ?, ?, '{}', ?, ?, 'done', NULL, now())",
                    [plan.study, n.id, n.kind, n.name, json.dumps(list(n.deps)),
                     json.dumps(n.lineage)])
    report.load(con, [plan.study])
    return {kind: report.varying(con, kind) for kind in ("pretrain", "clean")}


def test_a_training_set_and_a_poison_count_that_vary_apart_show_once_each(write_spec):
    """Sweeping the training pairs and the poison count: each is one fact in the names and
    one report column, though the poison, pretrain and clean configs all hold the pairs."""
    plan = compile_spec(load_spec(write_spec(SWEEP)))
    for kind in ("poison", "pretrain", "clean"):
        keys = sorted(f.key for f in plan.facts[kind])
        assert keys == ["poison.poisons", "poison.train.size"], (kind, keys)
    # Named as the node's own config holds it: the cleaning pool drawn from the pairs.
    assert {f.key: f.name for f in plan.facts["clean"]}["poison.train.size"] == "from.size"
    assert {n.name for n in plan.of_kind("pretrain")} == {
        f"pretrain@train.size={s},poisons={p}" for s in (256, 512) for p in (16, 32)}
    columns = _columns(plan)
    assert columns["pretrain"] == ["poison.poisons", "poison.train.size"]
    assert columns["clean"] == ["poison.poisons", "poison.train.size"]


def test_a_study_cleaning_another_studys_model_shows_its_own_seed(write_spec, base_spec):
    """`clean.start`: the model is another study's, pre-trained with that study's seed; the
    cleaning study's seed is its own setting and shown beside it, not hidden as a copy."""
    write_spec(base_spec, "upstream.toml")
    text = (base_spec.replace('name = "t"', 'name = "down"').replace("seed = 0", "seed = 7")
            .replace("[pretrain]\nobjective = \"mmcl\"\nepochs = 2\n", "")
            .replace("[model]\narch = \"xspec-vit-micro\"\n", "")
            .replace("[clean]\n", '[clean]\nstart = { study = "upstream.toml", '
                                  'node = "select" }\n'))
    plan = compile_spec(load_spec(write_spec(text, "down.toml")))
    clean = plan.of_kind("clean")[0]
    assert clean.lineage["poison.seed"] == 0 and clean.lineage["clean.seed"] == 7


def test_a_model_card_names_the_evaluation_set_from_the_one_key(write_spec, base_spec):
    """`xspec export`'s card reads the evaluation settings where the lineage shows them (the
    pretrain node's, on a cleaning node of the same study), not from a copy that is gone."""
    from xspec.export import Pick, card

    plan = compile_spec(load_spec(write_spec(base_spec)))
    clean = plan.of_kind("clean")[0]
    made = card(plan, clean, Pick(clean.id, 2, "node"), {}, None)
    assert made["evaluation"]["source.size"] == 64
    assert made["evaluation"]["source.split"] == "test"
    assert made["attack"]["poisons"] == 16 and "train.size" not in made["attack"]
