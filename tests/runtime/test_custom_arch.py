"""model.arch naming a local open_clip model-config JSON: validated without torch, fingerprinted
into node ids by content, built at its own image size, refused if it changed after planning."""

import json

import pytest
import torch

from xspec.compiler.plan import compile_spec
from xspec.errors import DataError, SpecError
from xspec.runtime import models
from xspec.spec.load import load_spec

TINY_224 = {"embed_dim": 32,
            "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16,
                           "patch_size": 56},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                         "layers": 1}}


def _spec(write_spec, base_spec, arch: str):
    text = base_spec.replace('arch = "xspec-vit-micro"', f'arch = "{arch}"')
    assert f'arch = "{arch}"' in text
    return load_spec(write_spec(text))


def test_config_file_is_fingerprinted_by_content(write_spec, base_spec, tmp_path):
    config = tmp_path / "tiny224.json"
    config.write_text(json.dumps(TINY_224))
    plan = compile_spec(_spec(write_spec, base_spec, "tiny224.json"))  # relative to the spec
    [pretrain] = plan.of_kind("pretrain")
    assert pretrain.identity["model"]["arch"] == str(config)
    config.write_text(json.dumps({**TINY_224, "embed_dim": 48}))
    [changed] = compile_spec(_spec(write_spec, base_spec, "tiny224.json")).of_kind("pretrain")
    assert changed.id != pretrain.id
    assert changed.identity["model"]["arch_sha256"] != pretrain.identity["model"]["arch_sha256"]
    with pytest.raises(DataError, match="changed since the study was planned"):
        models.resolve(str(config), pretrain.identity["model"]["arch_sha256"])
    named = compile_spec(_spec(write_spec, base_spec, "xspec-vit-micro")).of_kind("pretrain")[0]
    assert "arch_sha256" not in named.identity["model"]


def test_config_file_builds_its_model_and_tokenizer(tmp_path):
    config = tmp_path / "RN50.json"  # a stem that names a built-in config must not shadow it
    config.write_text(json.dumps(TINY_224))
    model = models.create(str(config), "scratch", torch.device("cpu"))
    assert models.image_stats(model)[2] == 224
    tokens = models.tokenizer(str(config))(["a photo of a cat"])
    assert tokens.shape == (1, 16)
    features = model.encode_image(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 32)
    assert models.resolve("RN50") == "RN50"


def test_bad_config_files_fail_validation(write_spec, base_spec, tmp_path):
    with pytest.raises(SpecError, match=r"model\.arch: .*missing\.json: No such file"):
        _spec(write_spec, base_spec, "missing.json")
    (tmp_path / "bad.json").write_text('{"embed_dim": 8}')
    with pytest.raises(SpecError, match="not an open_clip model config; missing vision_cfg, "
                                        "text_cfg"):
        _spec(write_spec, base_spec, "bad.json")
