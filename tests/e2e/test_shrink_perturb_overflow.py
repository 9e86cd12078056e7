"""A shrink-and-perturb candidate whose weights overflow is never chosen (nor evaluated)."""

import json

import pytest

from xspec.study import open_study, run_study
from xspec.store.workspace import Workspace

pytestmark = pytest.mark.slow

SHRINK_PERTURB = 'lr = 1e-5\nshrink_perturb = { shrink = [1.0], perturb = [%s], asr_threshold = 1.0 }'


def _run(write_spec, base_spec, tmp_path, perturb: str):
    study = open_study(write_spec(base_spec.replace("lr = [1e-5, 2e-5]", SHRINK_PERTURB % perturb)))
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    node = next(n for n in study.plan.nodes.values() if n.kind == "shrink_perturb")
    return outcome, workspace.runs / node.run_name


def test_an_overflowing_candidate_is_skipped(write_spec, base_spec, tmp_path):
    outcome, run = _run(write_spec, base_spec, tmp_path, "1e38, 0.0")
    assert not outcome.failed
    chosen = json.loads((run / "selected.json").read_text())["candidate"]
    assert chosen["perturb"] == 0.0
    assert "parameters overflowed; not a candidate" in (run / "log.txt").read_text()


def test_when_every_candidate_overflows_the_node_fails_and_says_why(write_spec, base_spec,
                                                                     tmp_path):
    outcome, run = _run(write_spec, base_spec, tmp_path, "1e38")
    reason = next(iter(outcome.failed.values()))
    assert "every (shrink, perturb) candidate overflowed" in reason
