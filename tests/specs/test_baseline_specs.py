"""The field's baselines (specs/baselines/): every spec compiles, those with a toy twin have its
shape, and the twins of the BadCLIP, PAR and DECREE tables run end to end; DECREE's report table
names every model with its norm and the AUROC over the study's models."""

from pathlib import Path

import pytest

from xspec.study import ingest_study, open_study, run_study
from xspec.store.workspace import Workspace

BASELINES = Path(__file__).resolve().parents[2] / "specs" / "baselines"
SPECS = sorted(p.stem for p in BASELINES.glob("*.toml"))
TWINS = sorted(p.stem for p in (BASELINES / "toy").glob("*.toml"))
FILES = ("CLIP_RN50", "CLIP_VITB32")  # compile only stats these files


@pytest.fixture
def weights(monkeypatch, tmp_path):
    for var in FILES:
        (tmp_path / f"{var}.pt").write_bytes(b"compile only stats this file")
        monkeypatch.setenv(var, str(tmp_path / f"{var}.pt"))


@pytest.mark.parametrize("name", SPECS)
def test_baseline_spec_compiles(name, weights):
    assert open_study(BASELINES / f"{name}.toml").plan.nodes


@pytest.mark.parametrize("name", TWINS)
def test_twin_has_the_shape_of_its_spec(name, weights):
    paper, toy = open_study(BASELINES / f"{name}.toml"), open_study(BASELINES / "toy" /
                                                                   f"{name}.toml")
    kinds = {n.kind for n in paper.plan.own()}
    assert {n.kind for n in toy.plan.own()} == kinds
    for kind in ("clean", "decree"):
        assert len(toy.plan.of_kind(kind)) <= len(paper.plan.of_kind(kind))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("baselines") / "ws")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["badclip_table1", "par_table", "decree"])
def test_twin_runs_end_to_end_and_reports(name, workspace):
    from xspec.study import report_study

    study = open_study(BASELINES / "toy" / f"{name}.toml")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    page = Path(report_study(study, workspace)).read_text()
    if name == "decree":
        assert "DECREE: backdoored encoders by trigger inversion" in page
        assert page.count('<td class="text">none (pre-trained)</td>') == 2
        assert page.count('<td class="text">mmcl+ssl fine-tuning</td>') >= 2
    else:
        assert "Attacks × defences, pre-trained with mmcl</h2>" in page
