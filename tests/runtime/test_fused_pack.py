"""Fused packing (`[run] fuse = true`): a pack's members stepped as one stacked model (vmap)
write the metric rows their unpacked runs write, within float tolerance."""

import shutil

import pyarrow.parquet as pq
import pytest

from xspec.errors import XspecError
from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study

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


def _rows(workspace: Workspace, node) -> dict:
    table = pq.read_table(workspace.run_dir(node).metrics_file).to_pylist()
    return {(r["epoch"], r["split"], r["metric"]): r["value"] for r in table
            if r["split"] != "perf"}


def test_fuse_without_a_pack_is_refused_naming_both_settings(write_spec, base_spec):
    with pytest.raises(XspecError, match="fuse = true.*set pack = K"):
        open_study(write_spec(_spec(base_spec, "fuse = true")))
    assert open_study(write_spec(_spec(base_spec, "pack = 4\nfuse = true"))).spec.run.fuse


@pytest.mark.slow
def test_fused_pack_writes_the_unpacked_metrics_within_float_tolerance(tmp_path):
    from tests_support import BASE

    path = tmp_path / "unpacked.toml"
    path.write_text(_spec(BASE, "pack = 1"))
    study, reference = open_study(path), Workspace(tmp_path / "unpacked")
    assert not run_study(study, reference, "debug").failed
    fused = Workspace(tmp_path / "fused")
    shutil.copytree(reference.root, fused.root)
    cleans = study.plan.of_kind("clean")
    assert len(cleans) == 4  # two learning rates x two SSL weights: one pack of four
    for node in cleans:
        shutil.rmtree(fused.run_dir(node).path)
    path = tmp_path / "fused.toml"
    path.write_text(_spec(BASE, "pack = 4\nfuse = true"))
    outcome = run_study(open_study(path), fused, "debug")
    assert sorted(outcome.ran) == sorted(n.id for n in cleans) and not outcome.failed
    losses = set()
    for node in cleans:
        want, got = _rows(reference, node), _rows(fused, node)
        assert got.keys() == want.keys()
        assert {split for _, split, _ in got} == {"train", "eval", "heldout"}
        for key, value in want.items():
            if key[1] == "eval":  # accuracies: near-tied logits of a chance-level model
                assert got[key] == pytest.approx(value, abs=2 / 64 + 1e-9), (node.name, key)
            else:
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (node.name, key)
        losses.add(round(got[(2, "train", "loss")], 5))
        assert len(fused.run_dir(node).status()["packed_with"]) == 3
        log = fused.run_dir(node).log_file.read_text()
        assert "stepped as one stacked model (run.fuse)" in log
    assert len(losses) == 4  # the members did train differently
