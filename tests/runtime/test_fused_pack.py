"""Fused packing (`[run] fuse = true`): the spec option."""

import pytest

from xspec.errors import XspecError
from xspec.study import open_study

GRID = """
[clean]
objective = "mmcl+ssl"
lr = [1e-4, 1e-3]
ssl_weight = [0.5, 1.0]
epochs = 2
batch_size = 32
warmup_steps = 1
"""


def _spec(base_spec: str, run: str) -> str:
    return base_spec.split("[clean]")[0] + GRID + f"\n[run]\n{run}\n"


def test_fuse_without_a_pack_is_refused_naming_both_settings(write_spec, base_spec):
    with pytest.raises(XspecError, match="fuse = true.*set pack = K"):
        open_study(write_spec(_spec(base_spec, "fuse = true")))
    assert open_study(write_spec(_spec(base_spec, "pack = 4\nfuse = true"))).spec.run.fuse
