"""The report renders in headless Chromium: every chart drawn, no console error, no request."""

from __future__ import annotations

import importlib.util
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xspec.reports.html import build_report


def _synthetic_study():
    """test_report.py's study writer (tests run with --import-mode=importlib, so load by path)."""
    spec = importlib.util.spec_from_file_location(
        "xspec_tests_report_synthetic", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


synthetic = _synthetic_study()

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
]

MARKS = ("point", "circle")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")


class ChartDom(HTMLParser):
    """Collects the body's data attributes, scripts, and per chart div its svg/canvas elements
    and drawn data marks (Vega's SVG renderer labels each point or circle item)."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.charts: dict[str, int] = {}
        self.marks: dict[str, int] = {}
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
            self.charts[self._chart] = self.marks[self._chart] = 0
        elif tag in ("svg", "canvas") and self._chart is not None:
            self.charts[self._chart] += 1
        if self._chart is not None and attributes.get("aria-roledescription") in MARKS:
            self.marks[self._chart] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._chart is not None:
            self._depth -= 1
            if self._depth == 0:
                self._chart = None


def dump_dom(html: Path, profile: Path) -> str:
    result = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout


def test_every_chart_renders_without_errors(tmp_path: Path) -> None:
    db = tmp_path / "xspec.duckdb"
    synthetic.write_study(db, synthetic.STUDY)
    html = build_report(db, synthetic.STUDY, tmp_path / "report")
    dom = ChartDom()
    dom.feed(dump_dom(html, tmp_path / "profile"))
    assert dom.body.get("data-errors") == ""
    assert dom.body.get("data-rendered") == dom.body.get("data-charts") == "3"
    assert dom.body.get("data-resources") == "0"
    assert dom.charts == {"chart-pareto": 1, "chart-trajectories": 1, "chart-pretrain": 1}
    runs = 2 * 2 * len(synthetic.LRS)
    assert dom.marks == {"chart-pareto": runs * 6 + 2, "chart-trajectories": runs * 7,
                         "chart-pretrain": 2 * 10 * 3}
    assert dom.scripts == 3
