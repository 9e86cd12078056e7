"""`xspec schema` accepts what `xspec validate` accepts: every shipped spec, sweeps, zip tables,
[[variants]] and ${VAR} strings; and rejects what it rejects, where JSON Schema can say so."""

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.errors import SpecError
from xspec.spec.jsonschema import spec_schema
from xspec.spec.load import load_spec

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").rglob("*.toml"))


@pytest.fixture(scope="module")
def validator():
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(tomllib.loads(text))]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_shipped_spec_is_valid_under_the_schema(validator, path):
    assert _errors(validator, path.read_text()) == []


def test_the_command_prints_this_schema():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == spec_schema()


def test_fields_carry_descriptions_and_allowed_values():
    defs = spec_schema()["$defs"]
    assert "learning rate" in defs["Pretrain"]["properties"]["lr"]["description"]
    assert "match_accuracy" in defs["Pretrain"]["properties"]["select"]["description"]
    location = defs["Trigger"]["properties"]["location"]
    assert location["description"] == "one of: random, corner, four_corners"
    assert location["anyOf"][0]["anyOf"][0]["enum"] == ["random", "corner", "four_corners"]


ACCEPTED = {
    "a sweep list": ("lr = [1e-5, 2e-5]", "lr = [1e-5, 2e-5, 4e-5]"),
    "a zip table": ('objective = "mmcl"\nepochs = 2',
                    'objective = ["mmcl", "ssl"]\nepochs = { zip = "objective", values = [2, 3] }'),
    "an environment variable": ("epochs = 2\n", 'epochs = "${XSPEC_TEST_UNSET:-3}"\n'),
    "an environment variable in a choice": (
        'kind = "badnet"', 'kind = "${XSPEC_TEST_UNSET:-badnet}"'),
    "a sweep of a nested scalar": ("poisons = 16", "poisons = 16\ntrigger = { size = [2, 4] }"),
    "another study's output": ('arch = "xspec-vit-micro"', 'arch = "xspec-vit-micro"\n'
                               'init = { study = "other.toml", node = "select" }'),
    "cleaning another study's model": (
        '[model]\narch = "xspec-vit-micro"\n\n[pretrain]\nobjective = "mmcl"\nepochs = 2\n',
        "", ("[clean]", '[clean]\nstart = { study = "other.toml", node = "select" }')),
    "a sweep over a file and another study's output": (
        "[clean]", '[clean]\ndeep_cluster = { labels = ["kmeans", { study = "other.toml" }] }'),
    "variants overriding parts of tables": (
        "[clean]", '[[variants]]\nattack.poisons = 8\nclean.lr = 3e-5\n\n'
                   '[[variants]]\npretrain.objective = "ssl"\n\n[clean]'),
}
REJECTED = {
    "an unknown key": ("epochs = 2\n", "epochs = 2\nepoch = 3\n"),
    "an unknown choice": ("poisons = 16", 'poisons = 16\ntrigger = { location = "centre" }'),
    "a number out of range": ("epochs = 2\n", "epochs = 0\n"),
    "a word for a number": ("lr = [1e-5, 2e-5]", 'lr = "fast"'),
    "an empty sweep": ("lr = [1e-5, 2e-5]", "lr = []"),
    "a zip table with an extra key": (
        "lr = [1e-5, 2e-5]", 'lr = { zip = "epochs", values = [1e-5], step = 2 }'),
    "a sweep of a table": ('[attack]\nkind = "badnet"\ntarget = "bag"\npoisons = 16',
                           'attack = [{ kind = "none" }, { kind = "none" }]'),
    "a sweep of a list field": ("[clean]", '[evaluate]\nmetrics = [["top1"], ["asr"]]\n\n[clean]'),
    "an unknown policy": ('objective = "mmcl"', 'objective = "mmcl"\nselect = "best"'),
    "an unknown key in a variant": ("[clean]", "[[variants]]\nclean.lrr = 1e-5\n\n[clean]"),
    "a missing table": ("[model]\narch", "[modell]\narch"),
    "a pre-training table beside another study's model": (
        "[clean]", '[clean]\nstart = { study = "other.toml" }'),
    "an unknown key in another study's output": (
        'arch = "xspec-vit-micro"', 'arch = "xspec-vit-micro"\ninit = { study = "o.toml", n = 1 }'),
}


def _both(write_spec, base_spec, validator, old, new, *more):
    text = base_spec
    for old, new in ((old, new), *more):
        assert old in text
        text = text.replace(old, new, 1)
    try:
        load_spec(write_spec(text))
        loader_ok = True
    except SpecError:
        loader_ok = False
    return loader_ok, not _errors(validator, text)


@pytest.mark.parametrize("case", ACCEPTED)
def test_what_validate_accepts_the_schema_accepts(write_spec, base_spec, validator, case):
    assert _both(write_spec, base_spec, validator, *ACCEPTED[case]) == (True, True)


@pytest.mark.parametrize("case", REJECTED)
def test_what_validate_rejects_the_schema_rejects(write_spec, base_spec, validator, case):
    assert _both(write_spec, base_spec, validator, *REJECTED[case]) == (False, False)
