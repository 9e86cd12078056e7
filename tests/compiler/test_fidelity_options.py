"""Every fidelity option (docs/FIDELITY.md) changes the id of the nodes it affects, and only theirs;
at its default it stays out of the config, so ids of specs that do not use it are kept."""

import pytest

from xspec.compiler.plan import compile_spec
from xspec.spec.load import load_spec

DEEP = "\n[clean.deep_cluster]\nk = 4\n"


def plan(write_spec, text):
    return compile_spec(load_spec(write_spec(text)))


def ids(p, kind):
    return {n.id for n in p.of_kind(kind)}


SSL_PRETRAIN = ('objective = "mmcl"', 'objective = "mmcl+ssl"')  # captions augmented only with SSL


@pytest.mark.parametrize(("section", "line", "kinds"), [
    ("[pretrain]", 'schedule = "cleanclip"', {"pretrain", "select", "clean"}),
    ("[pretrain]", 'text_augment = "once"', {"pretrain", "select", "clean"}),
    ("[clean]", 'schedule = "cleanclip"', {"clean"}),
    ("[clean]", 'text_augment = "once"', {"clean"}),
    ("[clean]", 'optimizer = "pretrain"', {"pretrain", "select", "clean"}),
    ("[pretrain]", 'precision = "fp32-forward+fp16-loss"', {"pretrain", "select", "clean"}),
    ("[clean]", 'precision = "fp32-forward+fp16-loss"', {"clean"}),
    ("[pretrain]", 'logit_scale_max = 4.6052', {"pretrain", "select", "clean"}),
    ("[pretrain]", 'truncation = "drop_eot"', {"pretrain", "select", "clean"}),
    ("[clean]", 'eda = "cleanclip"', {"clean"}),
    ("[clean]", 'letterless = "skip"', {"clean"}),
    ("[clean]", 'image_augment = "full_image"', {"clean"}),
])
def test_an_option_changes_the_ids_downstream_of_where_it_is_set(write_spec, base_spec, section,
                                                                 line, kinds):
    base_spec = base_spec.replace(*SSL_PRETRAIN, 1)
    before = plan(write_spec, base_spec)
    after = plan(write_spec, base_spec.replace(section, f"{section}\n{line}", 1))
    key, value = (part.strip().strip('"') for part in line.split("="))
    changed = {kind for kind in ("poison", "pretrain", "select", "clean")
               if ids(before, kind) != ids(after, kind)}
    assert changed == kinds
    node = after.of_kind("clean" if section == "[clean]" else "pretrain")[0]
    assert str(node.identity[key]) == value
    if key == "optimizer":  # the pre-training run keeps its optimizer state for the cleaning run
        assert after.of_kind("pretrain")[0].identity["save_optimizer"] is True
    assert key not in before.of_kind("clean")[0].identity


def test_variants_that_continue_and_do_not_continue_the_optimizer_share_one_pretraining(
        write_spec, base_spec):
    text = base_spec.replace("[clean]", '[clean]\noptimizer = ["fresh", "pretrain"]', 1)
    p = plan(write_spec, text)
    assert len(p.of_kind("pretrain")) == 1 and len(p.of_kind("clean")) == 4
    assert {n.identity.get("optimizer", "fresh") for n in p.of_kind("clean")} == {"fresh",
                                                                                 "pretrain"}


def test_poison_source_enters_the_config_with_poisons(write_spec, base_spec):
    fresh = plan(write_spec, base_spec.replace("[clean]", "[clean]\npoisons = 2", 1))
    copies = plan(write_spec, base_spec.replace(
        "[clean]", '[clean]\npoisons = 2\npoison_source = "pretrain"', 1))
    assert {n.identity["poison_source"] for n in fresh.of_kind("clean")} == {"fresh"}
    assert ids(fresh, "clean").isdisjoint(ids(copies, "clean"))
    assert ids(fresh, "pretrain") == ids(copies, "pretrain")
    clean = plan(write_spec, base_spec)
    assert len(clean.of_kind("clean")) == 2
    assert all("poison_source" not in n.identity for n in clean.of_kind("clean"))


@pytest.mark.parametrize("line", ['assign = "online"', 'head_reset = "every_epoch"'])
def test_deep_cluster_variants_change_the_cleaning_ids(write_spec, base_spec, line):
    default = plan(write_spec, base_spec + DEEP)
    variant = plan(write_spec, base_spec + DEEP + line + "\n")
    assert ids(default, "clean").isdisjoint(ids(variant, "clean"))
    key, value = (part.strip().strip('"') for part in line.split("="))
    assert {n.identity["deep_cluster"][key] for n in variant.of_kind("clean")} == {value}


def test_caption_augmentation_does_not_enter_mmcl_only_configs(write_spec, base_spec):
    before = plan(write_spec, base_spec)
    after = plan(write_spec, base_spec.replace("[pretrain]", '[pretrain]\ntext_augment = "once"', 1))
    assert ids(before, "pretrain") == ids(after, "pretrain")


def test_sig_blend_enters_the_config_only_when_set(write_spec, base_spec):
    sig = base_spec.replace('kind = "badnet"', 'kind = "sig"', 1)
    added = plan(write_spec, sig)
    blended = plan(write_spec, sig.replace("poisons = 16", "poisons = 16\nblend = 0.2", 1))
    assert [n.identity["kind"] for n in added.of_kind("poison")] == ["sig"]
    assert all("blend" not in n.identity for n in added.of_kind("poison"))
    assert {n.identity["blend"] for n in blended.of_kind("poison")} == {0.2}
    assert ids(added, "pretrain").isdisjoint(ids(blended, "pretrain"))  # through the poison


def test_weights_into_a_gelu_arch_with_a_quickgelu_twin_are_noted(write_spec, base_spec, tmp_path):
    weights = tmp_path / "RN50.pt"
    weights.write_bytes(b"compile only stats this file")
    text = base_spec.replace('arch = "xspec-vit-micro"', f'arch = "RN50"\ninit = "{weights}"')
    note = ("model.arch: 'RN50' uses nn.GELU; OpenAI's and CleanCLIP's RN50 weights use QuickGELU: "
            "name 'RN50-quickgelu' for them (docs/FIDELITY.md)")
    assert note in plan(write_spec, text).notes
    quick = text.replace('arch = "RN50"', 'arch = "RN50-quickgelu"')
    assert not any("nn.GELU" in n for n in plan(write_spec, quick).notes)


def test_caption_augmentation_options_stay_out_of_configs_without_ssl(write_spec, base_spec):
    """eda and letterless act only on SSL's augmented captions: an MMCL run keeps its id."""
    before = plan(write_spec, base_spec)
    after = plan(write_spec, base_spec.replace(
        "[pretrain]", '[pretrain]\neda = "cleanclip"\nletterless = "skip"', 1))
    assert ids(before, "pretrain") == ids(after, "pretrain")


def test_the_per_device_batch_form_is_the_global_batch(write_spec, base_spec):
    written = base_spec.replace("[pretrain]", "[pretrain]\nbatch_size = { per_device = 16, "
                                "devices = 4 }", 1)
    per_device = plan(write_spec, written)
    stated = plan(write_spec, base_spec.replace("[pretrain]", "[pretrain]\nbatch_size = 64", 1))
    assert ids(per_device, "pretrain") == ids(stated, "pretrain")
    assert per_device.of_kind("pretrain")[0].config.batch_size == 64


def test_a_malformed_per_device_batch_names_the_form(write_spec, base_spec):
    from xspec.errors import SpecError

    text = base_spec.replace("[pretrain]", "[pretrain]\nbatch_size = { per_gpu = 16 }", 1)
    with pytest.raises(SpecError, match=r"pretrain\.batch_size: a number \(the global batch\) "
                                        r"or \{ per_device = <pairs per device>, devices = "
                                        r"<count> \}; got keys per_gpu"):
        plan(write_spec, text)


