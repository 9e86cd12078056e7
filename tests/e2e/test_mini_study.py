"""A miniature study end to end: plan -> run -> DuckDB -> report, and a rerun trains nothing."""

import duckdb
import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.study import open_study, report_study, run_study
from xspec.store.workspace import Workspace

pytestmark = pytest.mark.slow

MINI = __import__("pathlib").Path(__file__).resolve().parents[2] / "specs/toy/mini.toml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("ws"))
    study = open_study(MINI)
    outcome = run_study(study, workspace, "debug")
    report = report_study(study, workspace)
    return study, workspace, outcome, report


def test_every_node_ran(finished):
    study, workspace, outcome, _ = finished
    assert not outcome.failed and not outcome.blocked
    assert len(outcome.ran) == len(study.plan.nodes) == 9


def test_metrics_land_in_duckdb_one_row_per_epoch(finished):
    study, workspace, _, _ = finished
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    rows = con.execute("""
        SELECT n.kind, m.epoch, count(*) FROM metrics m JOIN nodes n ON n.id = m.node_id
        WHERE m.split = 'eval' AND m.metric = 'top1' GROUP BY ALL ORDER BY ALL""").fetchall()
    # 4 cleaning runs evaluated at epochs 0, 1, 2; 2 pre-training runs at 1, 2; 2 selections.
    clean = {(e, c) for k, e, c in rows if k == "clean"}
    assert clean == {(0, 4), (1, 4), (2, 4)}
    assert {(e, c) for k, e, c in rows if k == "pretrain"} == {(1, 2), (2, 2)}
    assert sum(c for k, _, c in rows if k == "select") == 2
    dupes = con.execute("""SELECT count(*) FROM (SELECT node_id, epoch, split, metric, count(*) c
        FROM metrics GROUP BY ALL HAVING c > 1)""").fetchone()[0]
    assert dupes == 0
    asr_n = con.execute("SELECT DISTINCT n FROM metrics WHERE metric = 'asr'").fetchall()
    labels = __import__("xspec.runtime.data", fromlist=["x"]).open_eval(
        {"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist", "split": "test",
         "size": 64}, 16).labels
    assert asr_n == [(int((labels != 8).sum()),)]  # target 'bag' (class 8) images excluded


def test_report_is_written_and_self_contained(finished):
    _, _, _, report = finished
    html = report.read_text()
    assert "vegaEmbed" in html and "https://cdn" not in html
    assert "Best accuracy after cleaning" in html
    assert "lowest held-out MMCL loss" in html


def test_cleaning_logs_a_heldout_loss_every_epoch(finished):
    study, workspace, _, _ = finished
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    rows = con.execute("""SELECT epoch, count(*), min(n) FROM metrics
        WHERE split = 'heldout' AND metric = 'mmcl' GROUP BY 1 ORDER BY 1""").fetchall()
    assert [(e, c) for e, c, _ in rows] == [(0, 4), (1, 4), (2, 4)]
    assert rows[0][2] == 160  # 256 pairs - 64 cleaning - 16 poisoned = 176, in batches of 32


def test_training_epochs_log_loader_figures_shown_in_the_run_table(finished):
    study, workspace, _, report = finished
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    rows = con.execute("""SELECT n.kind, m.metric, count(*), min(m.value), max(m.value)
        FROM metrics m JOIN nodes n ON n.id = m.node_id WHERE m.split = 'perf'
        GROUP BY ALL ORDER BY ALL""").fetchall()
    assert [r[:3] for r in rows] == [("clean", "data_wait_share", 8), ("clean", "pairs_per_s", 8),
                                     ("pretrain", "data_wait_share", 4),
                                     ("pretrain", "pairs_per_s", 4)]
    shares = [r for r in rows if r[1] == "data_wait_share"]
    assert all(0 <= low <= high <= 1 for *_, low, high in shares)
    assert all(low > 0 for _, metric, _, low, _ in rows if metric == "pairs_per_s")
    assert "pairs/s" in report.read_text() and "data wait" in report.read_text()


def test_second_run_trains_nothing(finished):
    study, workspace, _, _ = finished
    again = run_study(open_study(MINI), workspace, "local")
    assert again.ran == [] and len(again.skipped) == len(study.plan.nodes)


def test_cli_plan_shows_done_and_json(finished):
    _, workspace, _, _ = finished
    result = CliRunner().invoke(app, ["plan", str(MINI), "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "9 nodes: 9 done; compute ~" in result.output
    result = CliRunner().invoke(app, ["plan", str(MINI), "-w", str(workspace.root), "--all"])
    assert "9 nodes (1 poison, 2 pretrain, 2 select, 4 clean); 9 done" in result.output
    result = CliRunner().invoke(app, ["plan", str(MINI), "--json"])
    plan = __import__("json").loads(result.output)
    assert plan["study"] == "mini" and len(plan["nodes"]) == 9
    assert set(plan["nodes"][0]) >= {"id", "kind", "deps", "config"}


def test_pretraining_from_a_local_checkpoint(finished, tmp_path):
    """model.init names a local file: the run starts from those weights (no download)."""
    study, workspace, _, _ = finished
    pretrain = study.plan.of_kind("pretrain")[0]
    checkpoint = workspace.run_dir(pretrain).checkpoint(2)
    text = MINI.read_text().replace('arch = "xspec-vit-micro"',
                                    f'arch = "xspec-vit-micro"\ninit = "{checkpoint}"')
    text = text.replace('name = "mini"', 'name = "mini-finetune"').replace("epochs = 2", "epochs = 1")
    spec = tmp_path / "finetune.toml"
    spec.write_text(text.split("[clean]")[0])
    tuned = open_study(spec)
    node = tuned.plan.of_kind("pretrain")[0]
    assert node.identity["model"]["init"]["path"] == str(checkpoint)
    outcome = run_study(tuned, Workspace(tmp_path / "ws"), "debug")
    assert not outcome.failed
    import torch
    from xspec.runtime.models import create
    start = create("xspec-vit-micro", {"path": str(checkpoint)}, torch.device("cpu"))
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in start.state_dict().items())


GOLDEN_LOSSES = {  # recorded with torch 2.14.1 on CPU; a change here is a reviewed decision
    "mmcl": [4.329050540924072, 4.13203501701355],
    "mmcl+ssl": [7.184134840965271, 6.330764055252075],
}


def test_golden_training_losses(finished):
    """Seeded end to end: the same spec gives the same per-epoch losses, run after run."""
    study, workspace, _, _ = finished
    import pyarrow.parquet as pq

    for node in study.plan.of_kind("pretrain"):
        rows = pq.read_table(workspace.run_dir(node).metrics_file).to_pylist()
        losses = [r["value"] for r in sorted(rows, key=lambda r: r["epoch"])
                  if (r["split"], r["metric"]) == ("train", "loss")]
        assert losses == pytest.approx(GOLDEN_LOSSES[node.identity["objective"]], rel=1e-4)


def test_cleaning_another_studys_model_runs_only_the_cleaning(finished, tmp_path):
    """clean.start names mini's MMCL model: its nodes are done in the workspace, so only the
    new cleaning runs train, starting from that select node's checkpoint."""
    _, workspace, _, _ = finished
    spec = tmp_path / "reclean.toml"
    spec.write_text(f"""
[study]
name = "mini-recleaned"
[data]
train = {{ format = "fashion_mnist", size = 256 }}
clean = {{ size = 64 }}
eval = {{ format = "fashion_mnist", split = "test", size = 64 }}
[attack]
kind = "badnet"
target = "bag"
poisons = 16
trigger = {{ size = 4, pattern = "gaussian_fixed" }}
[clean]
start = {{ study = "{MINI}", node = "select@objective=mmcl" }}
objective = "mmcl"
lr = [1e-4, 3e-4]
epochs = 1
batch_size = 32
warmup_steps = 1
""")
    study = open_study(spec)
    upstream = open_study(MINI).plan
    (select,) = [n for n in upstream.of_kind("select") if n.name == "select@objective=mmcl"]
    cleans = study.plan.of_kind("clean")
    assert len(cleans) == 2 and not study.plan.external
    assert all(select.id in n.deps for n in cleans)
    outcome = run_study(study, workspace, "debug")
    assert sorted(outcome.ran) == sorted(n.id for n in cleans) and not outcome.failed
    report_study(study, workspace)
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    kinds = con.execute("SELECT kind, count(*) FROM nodes WHERE study = 'mini-recleaned' "
                        "GROUP BY kind").fetchall()
    # The model it cleans and its pre-training are part of its report (the starting point).
    assert sorted(kinds) == [("clean", 2), ("poison", 1), ("pretrain", 1), ("select", 1)]


def test_every_run_records_its_provenance_in_duckdb_and_the_report(finished):
    """Code version, machine and per-epoch wall times of every run: file, table, report."""
    import json
    import subprocess

    import xspec

    study, workspace, _, report = finished
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    # The workspace is shared with the other tests of this module (another study cleans here).
    rows = con.execute("SELECT node_id, xspec_version, git_commit, torch, host, epoch_seconds "
                       "FROM provenance WHERE node_id IN (SELECT id FROM nodes WHERE study = ?)",
                       [study.plan.study]).fetchall()
    con.close()
    assert {r[0] for r in rows} == {n.id for n in study.plan.nodes.values()}
    ((version, commit),) = {(r[1], r[2]) for r in rows}  # one code version for all
    assert version == xspec.__version__
    if commit is not None:  # a git checkout: the commit it had (HEAD or, since, an ancestor)
        assert subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"],
                              cwd=__import__("pathlib").Path(xspec.__file__).parent).returncode == 0
    trained = {n.id: n.config.epochs for n in study.plan.nodes.values()
               if n.kind in ("pretrain", "clean")}
    for node_id, *_, seconds in rows:
        if node_id in trained:
            times = json.loads(seconds)
            assert sorted(map(int, times)) == list(range(1, trained[node_id] + 1))
            assert all(t > 0 for t in times.values())
    html = report.read_text()
    assert 'id="provenance"' in html and "mixed-code" not in html
    assert f"{len(rows)} run(s) recorded their code and machine" in html


def test_an_exported_checkpoint_loads_in_open_clip_with_the_same_logits(finished, tmp_path):
    """`xspec export --policy final`: open_clip.create_model_and_transforms(arch, pretrained=)
    gives the logits of xspec's own model of that checkpoint; the card names what it is."""
    import json

    import open_clip
    import torch

    from xspec.export import export
    from xspec.runtime import models

    study, workspace, _, _ = finished
    path = export(study, workspace, tmp_path / "out", policy="final",
                  pretrain_objective="mmcl+ssl", clean_objective="mmcl+ssl")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["arch"] == "xspec-vit-micro" and card["node"]["kind"] == "clean"
    open_clip.add_model_config(card["config_file"])
    loaded, _, _ = open_clip.create_model_and_transforms(card["arch"], pretrained=str(path))
    ours = models.create("xspec-vit-micro", "scratch", torch.device("cpu"),
                         log=lambda m: None)
    source = workspace.run_dir(study.plan.nodes[card["node"]["id"]]).checkpoint(card["epoch"])
    ours.load_state_dict(torch.load(source, weights_only=True)["model"])
    side = loaded.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    images = torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(0))
    texts = open_clip.get_tokenizer(card["arch"])(["a bag", "a shoe", "a shirt", "a coat"])
    loaded.eval(), ours.eval()
    with torch.no_grad():
        a, b = loaded(images, texts), ours(images, texts)
    logits = [out[2].exp() * out[0] @ out[1].t() if isinstance(out, tuple) else
              out["logit_scale"].exp() * out["image_features"] @ out["text_features"].t()
              for out in (a, b)]
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=0)
    assert card["attack"]["kind"] == "badnet" and card["poisons"] == 16
    assert card["defence"]["objective"] == "mmcl+ssl" and 0 <= card["metrics"]["asr"]["value"] <= 1
    lo, hi = card["metrics"]["top1"]["wilson95"]
    assert lo <= card["metrics"]["top1"]["value"] <= hi
    assert [n["kind"] for n in card["lineage"]] == ["poison", "pretrain", "select", "clean"]
    assert "## Lineage" in path.with_suffix(".md").read_text()
