"""`FileInput` plugin fields: resolved against the spec's folder, the content hash in the node
ids (only those of the nodes that read the file), and refused at run time if the file changed."""

import shutil
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from xspec.errors import SpecError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins"
PLUGIN = '''
from xspec.extend import FileInput, Pieces, XspecModel, register_defence


class Masked(XspecModel):
    mask: FileInput
    """A text file of unit indices."""


def build(spec, setup):
    return Pieces()


register_defence("masked", build, annotation=Masked | None, default=None, version="1")
'''


@pytest.fixture
def study(tmp_path):
    from xspec.extend.plugins import load_builtins
    from xspec.extend.registry import ALL

    load_builtins()  # the built-ins register once per process: keep them in the snapshot
    saved = [registry.snapshot() for registry in ALL]
    for name in ("study.toml", "frequency_trigger.py", "isolate_unlearn.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    (tmp_path / "masked.py").write_text(PLUGIN)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "mask.txt").write_text("1 2 3\n")
    spec = tmp_path / "study.toml"
    spec.write_text(spec.read_text().replace(
        'plugins = ["frequency_trigger", "isolate_unlearn"]',
        'plugins = ["frequency_trigger", "isolate_unlearn", "masked"]').replace(
        'clean.isolate_unlearn = { fraction = 0.1, weight = 0.5 }',
        'clean.masked = { mask = "inputs/mask.txt" }'))
    yield spec
    for registry, entries in zip(ALL, saved):
        registry.restore(entries)
    for name in ("frequency_trigger", "isolate_unlearn", "masked"):
        sys.modules.pop(name, None)


def _clean_ids(spec):
    from xspec.study import open_study

    plan = open_study(spec).plan
    return {n.id: n for n in plan.nodes.values() if n.kind == "clean"}


def test_resolved_against_the_spec_and_hashed_into_the_ids(study, monkeypatch):
    monkeypatch.chdir(study.parent.parent)  # not the spec's folder
    first = _clean_ids(study)
    masked = [n for n in first.values() if "masked" in n.identity]
    assert len(masked) == 1
    ref = masked[0].identity["masked"]["mask"]
    assert ref["path"] == str((study.parent / "inputs" / "mask.txt").resolve())
    assert len(ref["sha256"]) == 64
    (study.parent / "inputs" / "mask.txt").write_text("4 5 6\n")
    second = _clean_ids(study)
    assert set(first) - set(second) == {masked[0].id}  # only the node that reads it


def test_a_missing_file_is_a_spec_error_with_the_key(study):
    study.write_text(study.read_text().replace("inputs/mask.txt", "inputs/nope.txt"))
    from xspec.spec.load import load_spec

    with pytest.raises(SpecError, match=r"clean\.masked\.mask: .*inputs/nope.txt: no such file"):
        load_spec(study)


def test_the_node_refuses_a_file_changed_since_the_plan(study):
    from xspec.runtime.defences import active

    node = next(n for n in _clean_ids(study).values() if "masked" in n.identity)
    assert active(node.identity)  # unchanged: the node validates it again
    (study.parent / "inputs" / "mask.txt").write_text("changed\n")
    with pytest.raises(ValidationError, match="changed since the study was planned"):
        active(node.identity)
