"""The GPU check runs end to end on the CPU (--smoke): every section prints its figures, so the
script a GPU session gets to run once is known to work before it gets there."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_gpu_smoke_prints_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--smoke",
                             "--json", str(out)], capture_output=True, text=True, timeout=900,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = {row["figure"]: row for row in json.loads(out.read_text())}
    names = list(figures)
    assert any(n.startswith("training samples/s, xspec / open_clip_train") for n in names)
    assert any("files" in n and "xspec / open_clip_train" in n for n in names)
    assert any("mmcl+ssl, xspec, pairs/s" in n for n in names)
    for k in (1, 4, 8):
        assert any(f"K = {k}: time per grid point" in n for n in names), names
    for k in (4, 8):  # run.fuse: the members as one vmapped pass
        assert any(f"K = {k} fused: time per grid point" in n for n in names), names
        assert "floor" in figures[f"packed K = {k} fused / unpacked, time per grid point"]["note"]
    assert any(n.startswith("evaluation (clean + triggered copy)") for n in names)
    for row in figures.values():
        if isinstance(row["value"], float):
            assert row["value"] > 0, row
