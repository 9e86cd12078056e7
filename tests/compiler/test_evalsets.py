"""[evaluate.sets] and [evaluate.retrieval] in node configs: resolved subsets, template files,
unique names, notes, and ids of specs without them left alone."""

import pytest

from xspec.compiler.plan import compile_spec
from xspec.errors import SpecError
from xspec.spec.classes import wordnet_ids
from xspec.spec.load import load_spec

SETS = """
[evaluate]
primary = "fashion"
[evaluate.sets.shoes]
source = { format = "fashion_mnist", split = "test" }
subset = ["Sandal", "sneaker", "ankle_boot"]
[evaluate.sets.train_split]
source = { format = "fashion_mnist", split = "train", size = 500 }
[evaluate.retrieval.captions]
source = { format = "fashion_mnist", split = "test", size = 100 }
"""


def _plan(write_spec, text, name="spec.toml"):
    return compile_spec(load_spec(write_spec(text, name)))


def _eval(plan):
    return plan.of_kind("clean")[0].identity["eval"]


def test_sets_enter_eval_configs_of_training_nodes(write_spec, base_spec):
    plan = _plan(write_spec, base_spec + SETS)
    config = _eval(plan)
    assert config["primary"] == "fashion"
    assert config["sets"]["shoes"]["subset"] == [5, 7, 9]
    assert "subset" not in config["sets"]["train_split"]
    assert config["retrieval"]["captions"]["source"]["size"] == 100
    assert plan.of_kind("pretrain")[0].identity["eval"] == config
    assert any("shoes: attack.target 'bag' is not one of its classes" in n for n in plan.notes)


def test_a_spec_without_sets_keeps_its_ids(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec + "[evaluate]\nprimary = \"eval\"\nsets = {}\n", "b.toml")
    assert set(before.nodes) == set(after.nodes)
    assert "sets" not in _eval(before) and "primary" not in _eval(before)


def test_adding_a_set_changes_the_evaluating_nodes_only(write_spec, base_spec):
    before = _plan(write_spec, base_spec, "a.toml")
    after = _plan(write_spec, base_spec + SETS, "b.toml")
    same = {n.kind for n in after.nodes.values() if n.id in before.nodes}
    assert same == {"poison"}  # pre-training, selection and cleaning evaluate


def test_shipped_subsets_resolve_to_their_200_imagenet_classes(tmp_path, write_spec, base_spec):
    for wnid in ("n01443537", "n07753592"):
        (tmp_path / "val" / wnid).mkdir(parents=True)
    text = base_spec.replace('target = "bag"', 'target = "banana"').replace(
        'eval = { format = "fashion_mnist", split = "test", size = 64 }',
        f'eval = {{ format = "imagefolder", path = "{tmp_path}/val" }}')
    plan = _plan(write_spec, text + """
[evaluate.sets.imagenet_r]
source = { format = "imagefolder", path = "r" }
subset = "imagenet-r"
[evaluate.sets.imagenet_a]
source = { format = "imagefolder", path = "a" }
subset = "imagenet-a"
""")
    sets = _eval(plan)["sets"]
    wnids = wordnet_ids("imagenet1k")
    assert len(sets["imagenet_r"]["subset"]) == len(sets["imagenet_a"]["subset"]) == 200
    assert wnids.index("n07753592") in sets["imagenet_r"]["subset"]  # banana
    assert wnids.index("n01440764") not in sets["imagenet_a"]["subset"]  # tench
    assert sets["imagenet_r"]["source"]["path"] == str(tmp_path / "r")


def test_subset_and_template_files_are_read_relative_to_the_spec(write_spec, base_spec, tmp_path):
    (tmp_path / "shoes.txt").write_text("sandal\nsneaker\n")
    (tmp_path / "templates.txt").write_text("a photo of a {}.\n\nitap of a {}.\n")
    plan = _plan(write_spec, base_spec + """
[evaluate.sets.shoes]
source = { format = "fashion_mnist", split = "test" }
subset = "shoes.txt"
templates = "templates.txt"
""")
    shoes = _eval(plan)["sets"]["shoes"]
    assert shoes["subset"] == [5, 7]
    assert shoes["templates"] == ["a photo of a {}.", "itap of a {}."]


@pytest.mark.parametrize("table, message", [
    ('[evaluate.sets.x]\nsource = { format = "fashion_mnist" }\nsubset = ["sandal", "boat"]',
     "evaluate.sets.x.subset: 'boat' is not a class of 'fashion_mnist' (10 classes"),
    ('[evaluate]\nprimary = "x"\n[evaluate.sets.x]\nsource = { format = "fashion_mnist" }',
     "evaluate: set name 'x' is used twice (evaluate.primary = 'x' names data.eval)"),
    ('[evaluate.sets.x]\nsource = { format = "fashion_mnist" }\nsubset = []',
     "evaluate.sets.x.subset: give at least one class"),
    ('[evaluate.retrieval.x]\nsource = { format = "labels_csv", path = "a.csv" }',
     "evaluate.retrieval.x.source"),
    ('[evaluate.sets."bad name"]\nsource = { format = "fashion_mnist" }', "bad name"),
])
def test_bad_sets_fail_with_the_key(write_spec, base_spec, table, message):
    with pytest.raises(SpecError, match=None) as err:
        _plan(write_spec, base_spec + table)
    assert message in str(err.value)
