"""Compiled paper specs against golden plans, so a change to compilation is a reviewed diff.

A missing golden file is written and the test skips; commit it after reading it. After a change
meant to alter plans, re-pin with `XSPEC_UPDATE_GOLDEN=1 pytest tests/compiler/test_golden_plan.py`
and review the diff of tests/compiler/golden/ like code.
"""

import json
import os
from pathlib import Path

import pytest

from xspec.compiler.plan import compile_spec
from xspec.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
DATA_VARS = ("CC3M", "CC6M", "IMAGENET_VAL")


def plan_lines(spec: str, with_config: bool) -> list[str]:
    """Each node in plan order: kind, name, short id, dependencies by name and, with configs,
    the resolved config (indented, so a diff points at the field that changed)."""
    plan = compile_spec(load_spec(ROOT / spec))
    lines = []
    for node in plan.ordered():
        entry = {"kind": node.kind, "name": node.name, "id": node.short,
                 "deps": [plan.nodes[d].name for d in node.deps]}
        if with_config:
            entry["config"] = node.identity
        text = json.dumps(entry, sort_keys=True, indent=1 if with_config else None)
        lines += text.splitlines()
    return lines


def compare_golden(name: str, lines: list[str]) -> None:
    path = GOLDEN / name
    if not path.exists() or os.environ.get("XSPEC_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        pytest.skip(f"wrote golden file {path}; check it and commit it")
    assert lines == path.read_text().splitlines()


@pytest.fixture(autouse=True)
def _default_data_paths(monkeypatch):
    for name in DATA_VARS:  # the specs' ${VAR:-/data/...} defaults, whatever this machine has
        monkeypatch.delenv(name, raising=False)


def test_fig09_plan_with_configs_is_golden():
    compare_golden("fig09_shrink_perturb.json.txt", plan_lines("specs/fig09_shrink_perturb.toml", True))


def test_table2_plan_shape_is_golden():
    compare_golden("table2.jsonl", plan_lines("specs/table2.toml", False))
