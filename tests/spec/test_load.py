"""Spec loading: sweeps, zip, env vars, and the exact error lines a user sees."""

import pytest

from xspec.errors import SpecError
from xspec.spec.load import load_spec


def _errors(write_spec, text: str) -> list[str]:
    path = write_spec(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [line.removeprefix(f"{path}: ") for line in str(info.value).splitlines()]


def test_list_in_scalar_field_is_an_axis_and_axes_multiply(write_spec, base_spec):
    text = base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "mmcl+ssl"]')
    loaded = load_spec(write_spec(text))
    combos = [(s.pretrain.objective, s.clean.lr) for s, _ in loaded.variants]
    assert combos == [("mmcl", 1e-5), ("mmcl", 2e-5), ("mmcl+ssl", 1e-5), ("mmcl+ssl", 2e-5)]


def test_zip_links_an_axis_to_another(write_spec, base_spec):
    text = base_spec.replace('objective = "mmcl"', 'objective = ["mmcl", "mmcl+ssl"]\n'
                             'batch_size = { zip = "objective", values = [256, 128] }')
    loaded = load_spec(write_spec(text))
    pairs = {(s.pretrain.objective, s.pretrain.batch_size) for s, _ in loaded.variants}
    assert pairs == {("mmcl", 256), ("mmcl+ssl", 128)}


def test_zip_by_dotted_path_across_tables(write_spec, base_spec):
    text = base_spec.replace("epochs = 2\n", "epochs = { zip = \"clean.lr\", values = [3, 4] }\n", 2)
    text = text.replace("epochs = { zip = \"clean.lr\", values = [3, 4] }\n", "epochs = 2\n", 1)
    loaded = load_spec(write_spec(text))
    assert {(s.clean.lr, s.clean.epochs) for s, _ in loaded.variants} == {(1e-5, 3), (2e-5, 4)}


def test_env_vars_expand_with_default(write_spec, base_spec, monkeypatch):
    monkeypatch.setenv("XSPEC_TEST_NAME", "from-env")
    text = base_spec.replace('name = "t"', 'name = "${XSPEC_TEST_NAME}"').replace(
        'target = "bag"', 'target = "${XSPEC_TEST_UNSET:-sandal}"')
    spec = load_spec(write_spec(text)).first
    assert (spec.study.name, spec.attack.target) == ("from-env", "sandal")


def test_repeated_values_are_deduplicated(write_spec, base_spec):
    loaded = load_spec(write_spec(base_spec.replace("[1e-5, 2e-5]", "[1e-5, 2e-5, 1e-5]")))
    assert len(loaded.variants) == 2
    assert loaded.axes[0].dropped == (1e-5,)


@pytest.mark.parametrize("old, new, expected", [
    ('lr = [1e-5, 2e-5]', 'lr = [1e-5, "fast"]',
     "clean.lr[1]: input should be a valid number, unable to parse string as a number "
     "(got 'fast')"),
    ('objective = "mmcl"', 'objective = "clip"',
     "pretrain.objective: unknown value 'clip'; allowed: mmcl, ssl, mmcl+ssl"),
    ('epochs = 2\n', 'epochs = 2\nepoch = 3\n',
     "pretrain.epoch: unknown key; allowed: batch_size, eda, epochs, image_augment, letterless, "
     "logit_scale_max, lr, mmcl_weight, objective, precision, roclip, safeclip, schedule, "
     "select, ssl_weight, text_augment, truncation, warmup_steps, weight_decay"),
    ('kind = "badnet"', 'kind = "trojan"',
     "attack: unknown kind 'trojan'; allowed: badnet, label_consistent, blended, wanet, sig, none, "
     "badclip"),
    ('poisons = 16', 'poisons = -3', "attack.poisons: input should be greater than 0 (got -3)"),
    ('target = "bag"', 'target = "banana"',
     "attack.target: 'banana' is not a class of the evaluation set (10 classes, e.g. t-shirt, "
     "trouser, pullover, dress, coat)"),
    ('lr = [1e-5, 2e-5]', 'lr = []', "clean.lr: empty sweep; give at least one value"),
    ('[model]\narch = "xspec-vit-micro"', '[model]',
     "model.arch: required key is missing"),
    ('size = 64 }\neval', 'size = 64, overlap = "some" }\neval',
     "data.clean.overlap: unknown value 'some'; allowed: disjoint, overlap"),
    ('objective = "mmcl"', 'objective = ["mmcl", "ssl"]\n'
     'batch_size = { zip = "objective", values = [1, 2, 3] }',
     "pretrain.batch_size: 3 values cannot zip with pretrain.objective, which has 2"),
    ('objective = "mmcl"', 'objective = "mmcl"\nbatch_size = { zip = "nothing", values = [1] }',
     "pretrain.batch_size: zip = 'nothing' names no sweep axis; axes: clean.lr"),
    ('name = "t"', 'name = "${XSPEC_SURELY_UNSET}"',
     "study.name: environment variable XSPEC_SURELY_UNSET is not set"),
    ('objective = "mmcl"', 'objective = "mmcl+ssl"\nssl_weight = 0',
     "pretrain: objective 'mmcl+ssl' uses ssl but ssl_weight is 0"),
])
def test_error_lines_name_key_value_and_allowed(write_spec, base_spec, old, new, expected):
    assert old in base_spec or old.split("\n")[0] in base_spec
    assert _errors(write_spec, base_spec.replace(old, new, 1)) == [expected]


def test_malformed_toml_is_one_clean_error(write_spec):
    lines = _errors(write_spec, "[study\nname = 1")
    assert len(lines) == 1 and lines[0].startswith("not valid TOML:")


def test_many_problems_are_capped_at_ten(write_spec, base_spec):
    extra = "\n".join(f"bogus{i} = 1" for i in range(14))
    lines = _errors(write_spec, base_spec.replace("[clean]\n", f"[clean]\n{extra}\n"))
    assert len(lines) == 11 and lines[-1] == "… and 4 more"


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.toml")


def test_variants_override_the_base_and_union(write_spec, base_spec):
    text = base_spec + """
[[variants]]
clean.lr = [1e-3]

[[variants]]
pretrain.objective = "mmcl+ssl"
clean.lr = [5e-4, 6e-4]
"""
    loaded = load_spec(write_spec(text))
    combos = [(s.pretrain.objective, s.clean.lr) for s, _ in loaded.variants]
    assert combos == [("mmcl", 1e-3), ("mmcl+ssl", 5e-4), ("mmcl+ssl", 6e-4)]


def test_variant_errors_say_which_variant(write_spec, base_spec):
    text = base_spec + "\n[[variants]]\nclean.lr = [1e-3]\n\n[[variants]]\nclean.lr = [-1.0]\n"
    assert _errors(write_spec, text) == [
        "variants[1]: clean.lr[0]: input should be greater than 0 (got -1.0)"]


def test_unknown_architecture_suggests_close_names(write_spec, base_spec):
    lines = _errors(write_spec, base_spec.replace('"xspec-vit-micro"', '"ViT-B-23"'))
    assert lines == ["model.arch: unknown architecture 'ViT-B-23'; did you mean ViT-B-32, "
                     "ViT-S-32, ViT-M-32?"]
