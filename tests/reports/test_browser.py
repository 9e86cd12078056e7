"""Reports render in headless Chromium: every chart drawn, no console error, no request."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import tests_reports_support as syn  # tests/ is on sys.path (conftest.py)
from xspec.reports.html import build_comparison, build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=8000",
]
CHARTS = ["chart-policies", "chart-metrics", "chart-pareto", "chart-trajectories",
          "chart-pretrain", "chart-losses"]
MARKS = ("point", "circle", "tick", "line mark", "rule mark", "area mark")


@pytest.fixture(autouse=True)
def _chromium():
    """Skip without Chromium, saying why; XSPEC_REQUIRE_BROWSER=1 (as CI sets) fails instead."""
    if CHROMIUM is None:
        reason = "Chromium is not installed (no chromium on PATH): apt-get install chromium"
        if os.environ.get("XSPEC_REQUIRE_BROWSER"):
            pytest.fail(f"XSPEC_REQUIRE_BROWSER is set but {reason}", pytrace=False)
        pytest.skip(reason)


class ChartDom(HTMLParser):
    """Collects the body's data attributes, scripts, and per chart div its svg/canvas elements
    and drawn data marks (Vega's SVG renderer labels each mark group by its role)."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.charts: dict[str, int] = {}
        self.marks: dict[str, dict[str, int]] = {}
        self.scripts = 0
        self._chart: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in attributes.items() if k.startswith("data-")}
        elif tag == "script":
            self.scripts += 1
        elif tag == "div" and self._chart is not None:
            self._depth += 1
        elif tag == "div" and "chart" in (attributes.get("class") or "").split():
            self._chart, self._depth = attributes["id"], 1
            self.charts[self._chart], self.marks[self._chart] = 0, {}
        elif tag in ("svg", "canvas") and self._chart is not None:
            self.charts[self._chart] += 1
        role = attributes.get("aria-roledescription")
        if self._chart is not None and role in MARKS:
            self.marks[self._chart][role] = self.marks[self._chart].get(role, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._chart is not None:
            self._depth -= 1
            if self._depth == 0:
                self._chart = None


def dump_dom(html: Path, profile: Path) -> ChartDom:
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=90, check=True,
    )
    dom = ChartDom()
    dom.feed(result.stdout)
    return dom


def _assert_clean_render(dom: ChartDom) -> None:
    assert dom.body.get("data-errors") == ""
    assert dom.body.get("data-rendered") == dom.body.get("data-charts") == str(len(CHARTS))
    assert dom.body.get("data-resources") == "0"
    assert dom.charts == dict.fromkeys(CHARTS, 1)
    assert dom.scripts == 3


def test_every_chart_renders_without_errors(tmp_path: Path) -> None:
    db = tmp_path / "xspec.duckdb"
    syn.write_study(db, syn.STUDY)
    dom = dump_dom(build_report(db, syn.STUDY, tmp_path / "report", static=False),
                   tmp_path / "profile")
    _assert_clean_render(dom)
    runs = 4 * len(syn.LRS) + len(syn.LRS) + len(syn.SP_LRS)
    points = runs * syn.EPOCHS
    pareto = dom.marks["chart-pareto"]
    assert pareto["point"] > points  # every cleaning epoch, plus front rings and diamonds
    assert dom.marks["chart-trajectories"]["circle"] == runs * (syn.EPOCHS + 1)
    assert dom.marks["chart-pretrain"]["point"] == 2 * 10 * 3 + 2 * 3  # epochs and stars
    # 6 groups (objective pairs split by clean.poisons and shrink_perturb) x 4 policies, two
    # oracles without a pick, a top-1 and an ASR dot each
    assert dom.marks["chart-policies"]["circle"] == (6 * 4 - 2) * 2


def test_comparison_renders_without_errors(tmp_path: Path) -> None:
    db = tmp_path / "xspec.duckdb"
    syn.write_study(db, syn.STUDY)
    syn.write_study(db, "seed1", seed=1, shift=0.01)
    html = build_comparison(db, [syn.STUDY, "seed1"], tmp_path / "reports" / "both",
                            static=False)
    dom = dump_dom(html, tmp_path / "profile")
    _assert_clean_render(dom)
    runs = 4 * len(syn.LRS) + len(syn.LRS) + len(syn.SP_LRS)
    assert dom.marks["chart-trajectories"]["circle"] == 2 * runs * (syn.EPOCHS + 1)
    assert all(sum(marks.values()) > 0 for marks in dom.marks.values())
    index = dump_dom(tmp_path / "reports" / "index.html", tmp_path / "profile2")
    assert index.scripts == 0 and index.charts == {}
