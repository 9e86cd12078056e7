"""Every paper spec has a toy twin in specs/toy/ that runs end to end on a CPU in seconds.

The twins share one workspace, as a user running them one after another would: identical nodes
(the "CC6M" pre-training runs, table2's cleaning runs that Figures 5 and 13-15 compare against)
are content-addressed and run once.
"""

import math
import tomllib
from pathlib import Path

import duckdb
import pytest

from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study, run_study

SPECS = Path(__file__).resolve().parents[2] / "specs"
TOY = SPECS / "toy"
EXPERIMENTS = sorted(p.stem for p in SPECS.glob("*.toml") if p.stem != "quickstart")
HELPERS = {"mini", "clip_stand_in", "eval_sets"}  # toy specs that mirror no paper experiment
# Twins too long for the test suite's CPU budget; they keep the shape test. None now: the
# attack x defence twin (158 nodes) runs in minutes under the debug executor.
LONG: set[str] = set()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One workspace for all twins. The finetuned twins and the deep-clustering twin take the
    stand-in CLIP model of specs/toy/clip_stand_in.toml as an input: its nodes are part of
    their plans, run by the first twin that needs them and reused by the others."""
    return Workspace(tmp_path_factory.mktemp("toy-twins") / "ws")


def test_every_paper_spec_has_a_twin():
    twins = {p.stem for p in TOY.glob("*.toml")} - HELPERS
    assert twins == set(EXPERIMENTS)


def swept(path: Path) -> tuple[int, set[str]]:
    """How many [[variants]] tables a spec has, and which clean fields any of them sweeps."""
    raw = tomllib.loads(path.read_text())
    tables = [raw] + raw.get("variants", [])
    fields = {key for table in tables for key, value in table.get("clean", {}).items()
              if isinstance(value, list)}
    for table in tables:
        for key, value in table.get("clean", {}).get("deep_cluster", {}).items():
            if isinstance(value, list):
                fields.add(f"deep_cluster.{key}")
    return len(raw.get("variants", [])), fields


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_twin_has_the_shape_of_its_paper_spec(name, monkeypatch, tmp_path):
    (tmp_path / "RN50.pt").write_bytes(b"compile only stats this file")
    monkeypatch.setenv("CLIP_RN50", str(tmp_path / "RN50.pt"))
    for var in ("XSPEC_TOY_CKPT", "XSPEC_TOY_LABELS"):  # no twin needs one any more
        monkeypatch.delenv(var, raising=False)
    paper, toy = open_study(SPECS / f"{name}.toml"), open_study(TOY / f"{name}.toml")
    # The toy labels its deep-clustering pool with a pseudo_labels node where the paper reads
    # SigLIP's labels from a file.
    assert {n.kind for n in toy.plan.own()} - {"pseudo_labels"} == {
        n.kind for n in paper.plan.own()}
    # The paper's ResNet-50 experiments train the tiny ModifiedResNet, its ViT experiment a ViT.
    resnet = {n.identity["model"]["arch"].startswith("RN50") for n in paper.plan.of_kind("pretrain")}
    assert {n.identity["model"]["arch"] == "xspec-rn-tiny"
            for n in toy.plan.of_kind("pretrain")} == resnet
    assert swept(TOY / f"{name}.toml") == swept(SPECS / f"{name}.toml")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n not in LONG])
def test_twin_runs_end_to_end(name, workspace):
    study = open_study(TOY / f"{name}.toml")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    try:
        states = con.execute("SELECT DISTINCT status FROM nodes WHERE study = ?",
                             [study.plan.study]).fetchall()
        epochs = {metric: dict(con.execute("""
            SELECT n.id, list(DISTINCT m.epoch ORDER BY m.epoch) FROM nodes n
            JOIN metrics m ON m.node_id = n.id
            WHERE n.study = ? AND m.split = 'eval' AND m.metric = ?
            GROUP BY n.id""", [study.plan.study, metric]).fetchall())
            for metric in ("top1", "asr")}
        candidates = {node.id: con.execute(
            "SELECT value FROM metrics WHERE node_id = ? AND split = 'candidate'",
            [node.id]).fetchall() for node in study.plan.of_kind("shrink_perturb")}
    finally:
        con.close()
    assert states == [("done",)]
    # Shrink-and-perturb of the ResNet twin (BatchNorm) scores every candidate with finite values.
    for node in study.plan.of_kind("shrink_perturb"):
        grid = len(node.identity["shrink"]) * len(node.identity["perturb"])
        values = [v for (v,) in candidates[node.id]]
        assert len(values) == grid * len(node.identity["eval"]["metrics"]), node.name
        assert all(math.isfinite(v) for v in values), node.name
    # Top-1 and ASR for every cleaning epoch, 0 (before cleaning) included, and every
    # pre-training epoch (no ASR where the variant has no attack).
    for node in study.plan.own():
        wanted = {"clean": range(node.identity.get("epochs", 0) + 1),
                  "pretrain": range(1, node.identity.get("epochs", 0) + 1)}.get(node.kind)
        if wanted is None:
            continue
        metrics = ("top1", "asr") if node.lineage.get("poison.kind", "none") != "none" \
            else ("top1",)
        for metric in metrics:
            assert epochs[metric].get(node.id) == list(wanted), (node.name, metric)
    # Nodes of the studies it takes inputs from ran here first (and are reported by those).
    assert all(workspace.state(study.plan.nodes[i]) == "done" for i in study.plan.external)


@pytest.mark.slow
def test_benchmark_twin_report_shows_the_matrix(workspace):
    """The attack x defence twin's report: per objective a matrix whose rows are the six attacks
    and no attack, whose columns are the post-training defences and RoCLIP / SafeCLIP."""
    from xspec.study import report_study

    study = open_study(TOY / "attack_defence.toml")
    outcome = run_study(study, workspace, "debug")  # done already where the test above ran
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    page = Path(report_study(study, workspace)).read_text()
    for objective in ("mmcl", "mmcl+ssl"):
        assert f"Attacks × defences, pre-trained with {objective}</h2>" in page
    head = ("<th>none</th><th>mmcl fine-tuning</th><th>mmcl+ssl fine-tuning</th><th>par</th>"
            "<th>sufi</th><th>roclip (pre-training)</th><th>roclip + mmcl+ssl fine-tuning</th>"
            "<th>safeclip (pre-training)</th><th>safeclip + mmcl+ssl fine-tuning</th>")
    assert page.count(head) == 2
    for attack in ("badclip", "badnet", "blended", "label_consistent", "none", "sig", "wanet"):
        assert page.count(f'<tr><td class="text">{attack}</td>') >= 2, attack
