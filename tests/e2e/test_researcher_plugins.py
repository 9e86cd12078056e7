"""examples/plugins/pruning.toml: a metric, a cleaned-model policy and a pruning defence, each a
plugin written against docs/EXTENDING.md, show up in DuckDB and the report, grouped by defence
setting; the defence's after-step hook keeps its pruned units at zero through training."""

from pathlib import Path

import pytest

from xspec.store.results import results
from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study, report_study, run_study
from tests_support import registries_kept  # conftest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "plugins" / "pruning.toml"
PLUGINS = ("fine_pruning", "near_best", "trigger_shift")


@pytest.fixture(scope="module", autouse=True)
def _forget_plugins():
    """The plugins register into process-wide registries: undo that for the tests after these."""
    with registries_kept():
        yield


def test_plan_puts_plugin_versions_in_the_ids():
    plan = open_study(SPEC).plan
    cleans = [n for n in plan.nodes.values() if n.kind == "clean"]
    pruned = [n for n in cleans if "fine_pruning" in n.identity]
    assert len(cleans) == 4 and len(pruned) == 2
    assert all(n.identity["plugins"]["defence:fine_pruning"] == "1" for n in pruned)
    assert all(n.identity["plugins"]["metric:trigger_shift"] == "1" for n in cleans)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    study = open_study(SPEC)
    workspace = Workspace(tmp_path_factory.mktemp("pruning"))
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    return study, workspace


@pytest.mark.slow
def test_metrics_land_in_duckdb(finished):
    _, workspace = finished
    with results(workspace) as r:
        rows = r.sql("SELECT n.name, m.metric, m.value, m.n FROM metrics m JOIN nodes n "
                     "ON n.id = m.node_id WHERE n.kind = 'clean' AND m.split = 'eval' "
                     "AND m.epoch = 2").df()
    for metric in ("top1", "asr_top5", "trigger_shift"):
        assert (rows["metric"] == metric).sum() == 4, metric
    shift = rows[rows["metric"] == "trigger_shift"]
    assert ((shift["value"] > -1) & (shift["value"] <= 1 + 1e-6)).all()
    assert (shift["n"] == 64).all()


@pytest.mark.slow
def test_pruned_units_stay_zero(finished):
    import torch

    study, workspace = finished
    pruned = [n for n in study.plan.nodes.values() if "fine_pruning" in n.identity]
    for node in pruned:
        run = workspace.run_dir(node)
        weights = torch.load(run.checkpoint(2), map_location="cpu")["model"]
        rows = weights["visual.transformer.resblocks.0.mlp.c_fc.weight"].abs().sum(dim=1)
        assert int((rows == 0).sum()) == 64  # 25 % of 256 units, still zero after 2 epochs
        assert "pruned 64 of 256 units" in (run.path / "log.txt").read_text()


@pytest.mark.slow
def test_report_groups_policies_by_defence(finished):
    study, workspace = finished
    html = report_study(study, workspace).read_text()
    policies = html[html.index('<table id="policies">'):]
    policies = policies[:policies.index("</table>")]
    assert "cleaned with mmcl, fine_pruning.prune_ratio=0.25 (2 runs)" in policies
    assert "cleaned with mmcl, fine_pruning.prune_ratio=off (2 runs)" in policies
    assert policies.count("lowest ASR within 1 point of the best top-1") == 2
    metrics = html[html.index('<table id="metrics">'):]
    assert "<th>trigger_shift</th>" in metrics[:metrics.index("</table>")]
