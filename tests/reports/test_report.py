"""Report queries, statistics and HTML on small synthetic studies written straight into DuckDB."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema.core import load_schema

import tests_reports_support as syn  # tests/ is on sys.path (conftest.py)
from xspec.errors import XspecError
from xspec.reports import chartdata, charts, curves, load, policies, queries
from xspec.reports.html import build_comparison, build_report, sci, short_pct
from xspec.reports.stats import pool_seeds, t_half_width, wilson


STUDY, EVIL = syn.STUDY, syn.EVIL

TABLE2_BY_HAND = """
WITH ev AS (
    SELECT n.id, n.kind, n.lineage->>'$."pretrain.objective"' AS pre,
        n.lineage->>'$."clean.objective"' AS cln,
        coalesce(n.lineage->>'$."clean.poisons"', '0') AS poisons,
        (n.lineage->>'$."shrink_perturb.noise"') IS NOT NULL AS sp,
        (n.lineage->>'$."clean.lr"')::DOUBLE AS lr, m.epoch,
        max(CASE WHEN m.metric = 'top1' THEN m.value END) AS top1,
        max(CASE WHEN m.metric = 'asr' THEN m.value END) AS asr
    FROM nodes n, metrics m
    WHERE m.node_id = n.id AND m.split = 'eval' AND n.study = ?
    GROUP BY ALL
),
orig AS (SELECT pre, top1, asr FROM ev WHERE kind = 'select'),
ok AS (SELECT * FROM ev WHERE kind = 'clean' AND epoch > 0 AND asr <= ?),
best AS (SELECT pre, cln, poisons, sp, max(top1) AS top1 FROM ok GROUP BY ALL),
groups AS (
    SELECT DISTINCT n.lineage->>'$."pretrain.objective"' AS pre,
        n.lineage->>'$."clean.objective"' AS cln,
        coalesce(n.lineage->>'$."clean.poisons"', '0') AS poisons,
        (n.lineage->>'$."shrink_perturb.noise"') IS NOT NULL AS sp
    FROM nodes n WHERE n.study = ? AND n.kind = 'clean'
)
SELECT g.pre, g.cln, g.poisons, g.sp, orig.top1 AS orig_top1, orig.asr AS orig_asr,
    best.top1 AS best_top1,
    (SELECT min(lr) FROM ok WHERE ok.pre = g.pre AND ok.cln = g.cln AND ok.poisons = g.poisons
        AND ok.sp = g.sp AND ok.top1 = best.top1) AS best_lr,
    100 * (best.top1 - orig.top1) / orig.top1 AS rel
FROM groups g JOIN orig USING (pre) LEFT JOIN best USING (pre, cln, poisons, sp)
ORDER BY g.pre, g.cln, g.sp, g.poisons::INT
"""

POLICIES_BY_HAND = """
WITH ev AS (
    SELECT n.id, n.lineage->>'$."pretrain.objective"' AS pre,
        n.lineage->>'$."clean.objective"' AS cln,
        'shrink_perturb=' || CASE WHEN n.lineage->>'$."shrink_perturb.noise"' IS NULL
            THEN 'off' ELSE 'on' END || ', poisons='
            || coalesce(n.lineage->>'$."clean.poisons"', '0') AS setting, m.epoch,
        max(m.value) FILTER (m.split = 'eval' AND m.metric = 'top1') AS top1,
        max(m.value) FILTER (m.split = 'eval' AND m.metric = 'asr') AS asr,
        coalesce(max(m.value) FILTER (m.split = 'heldout' AND m.metric = 'mmcl'),
                 max(m.value) FILTER (m.split = 'train' AND m.metric = 'mmcl')) AS mmcl
    FROM nodes n JOIN metrics m ON m.node_id = n.id
    WHERE n.study = $study AND n.kind = 'clean' AND m.epoch >= 1
    GROUP BY ALL
),
last AS (SELECT * FROM ev WHERE (id, epoch) IN (SELECT (id, max(epoch)) FROM ev GROUP BY id))
SELECT pre, cln, setting,
    (SELECT max(top1) FROM ev e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting AND asr <= $t) AS oracle,
    (SELECT arg_max(asr, [top1, -asr]) FROM ev e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting)
        AS best_accuracy_asr,
    (SELECT max(top1) FROM ev e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting) AS best_accuracy,
    (SELECT arg_max(top1, [top1, -asr]) FROM last e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting)
        AS final,
    (SELECT median(top1) FROM last e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting) AS final_median,
    (SELECT min(asr) FROM last e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting) AS final_asr_min,
    (SELECT arg_min(top1, [mmcl, asr]) FROM ev e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting)
        AS min_mmcl,
    (SELECT arg_min(asr, [mmcl, asr]) FROM ev e WHERE e.pre = p.pre AND e.cln = p.cln AND e.setting = p.setting)
        AS min_mmcl_asr
FROM (SELECT DISTINCT pre, cln, setting FROM ev) p
ORDER BY pre, cln, setting
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ws") / "xspec.duckdb"
    syn.write_study(path, STUDY)
    syn.write_study(path, "seed1", seed=1, shift=0.01)
    syn.write_study(path, "seed2", seed=2, shift=-0.004)
    return path


@pytest.fixture(scope="module")
def con(db: Path):
    connection = load.open_store(db)
    load.load(connection, [STUDY])
    yield connection
    connection.close()


def test_wilson_matches_hand_computation() -> None:
    z = 1.959963984540054
    for k, n in [(50, 100), (0, 10), (950, 1000), (905, 905), (3, 7)]:
        # The closed form as the roots of the score-test quadratic (k successes of n).
        root = z * math.sqrt(k * (n - k) / n + z * z / 4)
        want = ((k + z * z / 2 - root) / (n + z * z), (k + z * z / 2 + root) / (n + z * z))
        lo, hi = wilson(k / n, n)
        assert (float(lo), float(hi)) == pytest.approx(want, abs=1e-12)
    assert [round(float(b), 4) for b in wilson(0.5, 100)] == [0.4038, 0.5962]
    assert [round(float(b), 4) for b in wilson(0.0, 10)] == [0.0, 0.2775]
    assert all(math.isnan(float(b)) for b in wilson(0.5, 0))


def test_t_interval_and_seed_pooling() -> None:
    assert t_half_width([0.70, 0.72, 0.74]) == pytest.approx(4.302653 * 0.02 / math.sqrt(3))
    assert math.isnan(t_half_width([0.7]))
    frame = pd.DataFrame({"key": ["a", "a", "b"], "seed": [0, 1, 0], "x": [0.1, 0.3, None]})
    pooled = pool_seeds(frame, ["key"], ["x"]).set_index("key")
    assert pooled.loc["a", "x"] == pytest.approx(0.2)
    assert pooled.loc["a", "x_pm"] == pytest.approx(12.706205 * math.sqrt(0.02) / math.sqrt(2))
    assert pooled.loc["a", "seed_list"] == "0, 1" and pooled.loc["b", "x_count"] == 0


def test_settings_are_the_varying_keys(con) -> None:
    assert load.varying(con, "clean") == ["shrink_perturb", "poisons"]
    assert load.varying(con, "pretrain") == []
    settings = sorted(set(con.execute("SELECT settings FROM xr_clean").fetchall()))
    assert settings == [("shrink_perturb=off, poisons=0",), ("shrink_perturb=off, poisons=10",),
                        ("shrink_perturb=on, poisons=0",)]


@pytest.mark.parametrize("threshold", [0.05, 0.2])
def test_table2_matches_hand_written_query(con, db: Path, threshold: float) -> None:
    got = queries.table2(con, threshold)
    want = con.execute(TABLE2_BY_HAND, [STUDY, threshold, STUDY]).df()
    assert len(got) == len(want) == 6
    assert list(got["pretrain_objective"]) == list(want["pre"])
    assert list(got["clean_objective"]) == list(want["cln"])
    for ours, theirs in [("original_top1", "orig_top1"), ("original_asr", "orig_asr"),
                         ("best_top1", "best_top1"), ("best_lr", "best_lr"),
                         ("relative_change_pct", "rel")]:
        pd.testing.assert_series_equal(got[ours], want[theirs], check_names=False)
    assert list(got["runs"]) == [7, 5, 5, 5, 5, 2]
    assert list(got["runs_done"]) == [5, 5, 5, 5, 5, 2]


def test_table2_no_epoch_reached_threshold(con) -> None:
    rows = queries.table2(con, 0.05)
    assert rows["best_top1"].isna().tolist() == [True, False, False, True, False, False]
    ssl = rows.iloc[4]
    assert ssl["best_asr"] <= 0.05 and ssl["relative_change_pct"] < -30
    assert rows.iloc[1]["relative_change_pct"] > -2


def test_table3_and_shrink_perturb(con) -> None:
    table3 = queries.table3(con)
    assert list(table3["pretrain_objective"]) == ["mmcl", "mmcl+ssl"]
    assert list(table3["epoch"]) == [10, 10] and list(table3["pretrain_epochs"]) == [10, 10]
    assert list(zip(table3["top1"], table3["asr"])) == list(syn.STARTS.values())
    assert list(table3["top1_n"]) == [syn.EVAL_N] * 2
    sp = queries.shrink_perturb(con).iloc[0]
    assert (sp["candidates"], sp["under_threshold"], sp["chosen"]) == (6, 2, 3)
    assert (sp["shrink"], sp["perturb"], sp["top1"], sp["asr"]) == (1.0, 0.0, 0.17, 0.6)


@pytest.mark.parametrize("threshold", [0.05, 0.5])
def test_selection_policies_match_hand_written_query(con, threshold: float) -> None:
    got = policies.selection_policies(con, threshold)
    want = con.execute(POLICIES_BY_HAND, {"study": STUDY, "t": threshold}).df()
    # A group per objective pair and setting (clean.poisons, shrink_perturb on/off): runs of
    # different settings are never pooled.
    assert len(got) == 4 * len(want) == 4 * 6
    pick = got.pivot_table(index=["pretrain_objective", "clean_objective", "settings"],
                           columns="policy", values=["top1", "asr", "top1_median", "asr_min"],
                           aggfunc="first", dropna=False)
    for (pre, cln, setting), row in want.set_index(["pre", "cln", "setting"]).iterrows():
        assert pick.loc[(pre, cln, setting), ("top1", "oracle")] == pytest.approx(
            row["oracle"], nan_ok=True)
        assert pick.loc[(pre, cln, setting), ("top1", "best_accuracy")] == row["best_accuracy"]
        assert pick.loc[(pre, cln, setting), ("asr", "best_accuracy")] == row["best_accuracy_asr"]
        assert pick.loc[(pre, cln, setting), ("top1", "final")] == row["final"]
        assert pick.loc[(pre, cln, setting), ("top1_median", "final")] == pytest.approx(
            row["final_median"])
        assert pick.loc[(pre, cln, setting), ("asr_min", "final")] == row["final_asr_min"]
        assert pick.loc[(pre, cln, setting), ("top1", "min_mmcl")] == row["min_mmcl"]
        assert pick.loc[(pre, cln, setting), ("asr", "min_mmcl")] == row["min_mmcl_asr"]
    assert list(got["label"][:4]) == [
        f"oracle: best top-1 with ASR ≤ {short_pct(threshold)}", "final epoch",
        "best top-1, ASR unknown", "lowest training MMCL loss"]


def test_chart_data_is_bounded_and_keeps_the_front(con) -> None:
    full = chartdata.pareto_points(con)
    assert full.attrs["shown"] == full.attrs["total"] == len(full) == (4 * 5 + 5 + 2) * 6
    small = chartdata.pareto_points(con, budget=40)
    assert small.attrs["total"] == len(full) and len(small) <= 50
    front = full[full["front"]]
    assert (small[small["front"]]["top1"].max() == front["top1"].max())
    for _, panel in front.groupby(["pretrain_objective", "clean_objective"]):
        ordered = panel.sort_values("asr")
        assert ordered["top1"].is_monotonic_increasing
    runs = chartdata.trajectories(con)
    assert runs.attrs["shown"] == runs.attrs["total"] - 2 and set(runs["epoch"]) == set(range(7))


def test_chart_specs_are_valid_vega_lite(con) -> None:
    points, starts = chartdata.pareto_points(con), chartdata.pareto_starts(con)
    pre, selected = chartdata.pretrain_curves(con)
    table = policies.selection_policies(con, 0.05)
    schema = load_schema()
    for spec in [charts.pareto_chart(points, starts, 0.05),
                 charts.trajectory_chart(chartdata.trajectories(con)),
                 curves.pretrain_chart(pre, selected),
                 curves.loss_chart(chartdata.loss_curves(con)),
                 curves.policy_chart(table, 0.05)]:
        validate_jsonschema(spec, schema)
        assert sum(len(rows) for rows in spec["datasets"].values()) < 5000


def test_report_escapes_values_and_loads_nothing(db: Path, tmp_path: Path) -> None:
    html = build_report(db, STUDY, tmp_path / "report", static=False).read_text(encoding="utf-8")
    assert EVIL not in html
    assert html.count("</script>") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    outside_bundle = "".join(p for p in html.split("</script>") if "window.vegaEmbed=" not in p)
    assert not re.search(r"<(link|iframe|img|object|embed)\b", outside_bundle, re.I)
    assert "http://" not in outside_bundle and "https://" not in outside_bundle
    assert outside_bundle.count("vegaEmbed(") == 1 and html.count('class="chart"') == 6
    assert not list((tmp_path / "report").glob("*.png"))


def _table(html: str, table_id: str) -> str:
    start = html.index(f'<table id="{table_id}">')
    return html[start:html.index("</table>", start)]


def test_report_tables(db: Path) -> None:
    out = db.parent / "reports" / "tables"
    html = build_report(db, STUDY, out, asr_threshold=0.05, static=False).read_text()
    table2 = _table(html, "table2")
    assert table2.count("no epoch reached ASR ≤ 5%") == 2
    lo, hi = wilson(0.2376, syn.EVAL_N)
    assert f'title="Wilson 95% interval: {100 * lo:.2f} – {100 * hi:.2f}">23.76' in table2
    assert f'± {100 * (hi - lo) / 2:.2f}</span>' in table2
    assert "<th class=\"text\">poisons</th>" in table2 and ">shrink_perturb</th>" in table2
    assert "7*" in table2 and "5 of 7 runs done" in table2
    assert "99.50" in _table(html, "table3") and "best_accuracy" in _table(html, "table3")
    assert "1.0" in _table(html, "shrink-perturb")
    policy = _table(html, "policies")
    assert policy.count('<td class="text">lowest training MMCL loss<br>') == 6  # a group each
    assert '<span class="files">top5 ' in policy  # the pick's other metrics
    metrics = _table(html, "metrics")  # every other evaluation metric, start -> last epoch
    assert "<th>top5</th>" in metrics and " → " in metrics
    assert "cleaned with mmcl+ssl, shrink_perturb=off, poisons=10 (5 runs)" in policy
    assert "0 of 2" in policy and "0.0 of 2" not in policy
    assert "no epoch reached ASR ≤ 5%" in policy
    runs = _table(html, "runs")
    assert 'href="../../runs/clean-clean-s0-x/log.txt"' in runs
    assert "CUDA out of memory &lt;script&gt;" in runs


def test_static_copies_and_index(db: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    html = build_report(db, STUDY, reports / "one").read_text()
    for chart in ("chart-pareto", "chart-policies", "chart-pretrain"):
        assert (reports / "one" / f"{chart}.svg").read_text().startswith("<svg")
        assert (reports / "one" / f"{chart}.png").read_bytes()[:4] == b"\x89PNG"
        assert f'href="{chart}.png"' in html
    assert not (reports / "one" / "chart-losses.png").exists()
    build_comparison(db, ["seed1", "seed2"], reports / "both", static=False)
    index = (reports / "index.html").read_text()
    assert 'href="one/index.html"' in index and 'href="both/index.html"' in index
    assert "seed1, seed2" in index and EVIL not in index
    manifest = json.loads((reports / "both" / "report.json").read_text())
    assert manifest["kind"] == "comparison" and manifest["studies"] == ["seed1", "seed2"]


def test_comparison_renders_both_studies_and_pools_seeds(db: Path, tmp_path: Path) -> None:
    html = build_comparison(db, [STUDY, "seed1", "seed2"], tmp_path / "c", static=False)
    text = html.read_text()
    assert EVIL not in text and text.count('class="chart"') == 6
    table2 = _table(text, "table2")
    assert table2.count("seed1</td>") == 6 and table2.count("seed2</td>") == 6
    assert table2.count("cc6m &lt;script&gt;") == 6
    pooled = _table(text, "pooled-table2")
    assert pooled.count("<tr><td") == 6 and "0, 1, 2" in pooled
    con = load.open_store(db)
    load.load(con, [STUDY, "seed1", "seed2"])
    table2 = queries.table2(con, 0.05)
    con.close()
    best = table2[(table2["pretrain_objective"] == "mmcl+ssl")
                  & (table2["clean_objective"] == "mmcl+ssl")
                  & (table2["settings"] == "shrink_perturb=off, poisons=0")]["best_top1"]
    mean, half = best.mean(), t_half_width(best)
    assert half == pytest.approx(4.302653 * best.std(ddof=1) / math.sqrt(3))
    assert f"{100 * mean:.2f}<span class=\"pm\"> ± {100 * half:.2f}</span>" in pooled


def test_report_errors(db: Path, tmp_path: Path) -> None:
    with pytest.raises(XspecError, match="no nodes for study 'missing'"):
        build_report(db, "missing", tmp_path)
    with pytest.raises(XspecError, match="no results database"):
        build_report(tmp_path / "absent.duckdb", STUDY, tmp_path)


def test_report_with_nodes_but_no_metrics(db: Path, tmp_path: Path) -> None:
    import duckdb

    copy = tmp_path / "x.duckdb"
    copy.write_bytes(db.read_bytes())
    con = duckdb.connect(str(copy))
    con.execute("INSERT INTO nodes SELECT 'other', id || '-o', kind, name, config, deps, "
                "lineage, 'pending', NULL, updated, NULL FROM nodes WHERE study = 'seed1'")
    con.close()
    html = build_report(copy, "other", tmp_path / "o", static=False).read_text()
    assert 'class="chart"' not in html
    assert len(re.findall(r"<td>—</td>\s*<td>—</td><td>—</td>", _table(html, "table3"))) == 2
    assert _table(html, "table2").count("no cleaning epoch recorded yet") == 6


@pytest.mark.parametrize("value, text", [(5e-7, "5e-7"), (2.5e-5, "2.5e-5"), (1e-4, "1e-4"),
                                          (None, "—")])
def test_sci(value: float | None, text: str) -> None:
    assert sci(value) == text


@pytest.mark.parametrize("value, text", [(0.05, "5%"), (0.025, "2.5%"), (0.1, "10%")])
def test_short_pct(value: float, text: str) -> None:
    assert short_pct(value) == text


def test_report_spec_chooses_tables_and_plots(db: Path, tmp_path: Path) -> None:
    html = build_report(db, STUDY, tmp_path / "r", static=False, tables=["best_clean_accuracy"],
                        plots=["pareto"]).read_text()
    assert 'id="table2"' in html and 'id="table3"' not in html and 'id="policies"' not in html
    assert 'id="chart-pareto"' in html
    assert 'id="chart-trajectories"' not in html and 'id="chart-pretrain"' not in html
