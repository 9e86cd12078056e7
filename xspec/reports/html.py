"""Self-contained HTML reports: one study, a comparison of studies, and the index of reports.

The Vega, Vega-Lite and vega-embed JavaScript comes from `vl_convert` (no network) and is inlined
once; each chart is a Vega-Lite spec passed to `vegaEmbed`. Jinja2 autoescapes every value, and
the `tojson` filter escapes `<`, `>`, `&` and `'` inside embedded JSON, so a name holding
`</script>` stays data. The main charts are also written beside the page as PNG and SVG (for
papers and slides) unless `static=False`.

Layout: <reports>/<name>/index.html (+ report.json, chart-*.png/svg) and <reports>/index.html,
rebuilt after each report from the database and the report.json files next to it.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import altair as alt
import jinja2
import markupsafe
import pandas as pd
import vl_convert

from xspec.errors import XspecError
from xspec.reports import load, pages

TEMPLATES = Path(__file__).parent / "templates"
MANIFEST = "report.json"


@functools.cache
def vegalite_version() -> str | None:
    """altair's Vega-Lite version as vl_convert names it (e.g. '6.1'), if vl_convert has it."""
    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return version if version in vl_convert.get_vegalite_versions() else None


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "xspec"


@functools.cache
def javascript_bundle() -> markupsafe.Markup:
    """vega + vega-lite + vega-embed as one script, matching altair's Vega-Lite version.

    vl_convert builds the bundle on each call (seconds), so it is cached on disk under
    $XDG_CACHE_HOME/xspec (default ~/.cache/xspec), keyed by the vl_convert and Vega-Lite
    versions; without a writable cache it is simply rebuilt.
    """
    version = vegalite_version()
    cached = _cache_dir() / f"vega-bundle-{vl_convert.__version__}-{version or 'latest'}.js"
    try:
        bundle = cached.read_text(encoding="utf-8")
    except OSError:
        bundle = vl_convert.javascript_bundle(vl_version=version)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            _write(cached, bundle)
        except OSError:
            pass
    if "</script" in bundle.lower():
        raise RuntimeError("the vl_convert bundle contains '</script' and cannot be inlined")
    return markupsafe.Markup(bundle)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def pct(value: float | None) -> str:
    """0.2376 -> '23.76%'; missing values as an em dash."""
    return "—" if _missing(value) else f"{100 * value:.2f}%"


def num(value: float | None) -> str:
    """A fraction as a percentage number without the sign: 0.2376 -> '23.76'."""
    return "—" if _missing(value) else f"{100 * value:.2f}"


def short_pct(value: float) -> str:
    """A threshold without trailing zeros: 0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{100 * value:g}%"


def signed_pct(value: float | None) -> str:
    """A value already in percent, with its sign: -45.3 -> '-45.30%'."""
    return "—" if _missing(value) else f"{value:+.2f}%"


def sci(value: float | None) -> str:
    """Learning rates as short scientific notation: 5e-07 -> '5e-7', 2.5e-05 -> '2.5e-5'."""
    if _missing(value):
        return "—"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def setting(value) -> str:
    """A settings cell: missing (the key is absent for this run) as an em dash."""
    return "—" if _missing(value) else str(value)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=pct, num=num, short_pct=short_pct, signed_pct=signed_pct, sci=sci,
                       setting=setting)
    return env


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _render_static(block: pages.ChartBlock) -> tuple[str, bytes]:
    svg = vl_convert.vegalite_to_svg(block.spec, vl_version=vegalite_version())
    return svg, vl_convert.svg_to_png(svg, scale=2)


def _export_static(blocks: list[pages.ChartBlock], out_dir: Path, enabled: bool) -> dict:
    """SVG and PNG (2x, rasterised from the SVG) of the main charts beside the page, rendered
    in parallel (vl_convert releases the GIL); returns chart id -> file names."""
    chosen = [b for b in blocks if enabled and b.static]
    for block in blocks:
        if block not in chosen:
            (out_dir / f"{block.id}.png").unlink(missing_ok=True)
            (out_dir / f"{block.id}.svg").unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        rendered = list(pool.map(_render_static, chosen))
    written = {}
    for block, (svg, png) in zip(chosen, rendered):
        _write(out_dir / f"{block.id}.svg", svg)
        tmp = out_dir / f".{block.id}.png.tmp"
        tmp.write_bytes(png)
        tmp.replace(out_dir / f"{block.id}.png")
        written[block.id] = {"png": f"{block.id}.png", "svg": f"{block.id}.svg"}
    return written


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


TABLES = ("selected_models", "best_clean_accuracy", "selection_policies")
PLOTS = {"pareto": "chart-pareto", "trajectories": "chart-trajectories",
         "pretrain_curves": "chart-pretrain", "selection_policies": "chart-policies",
         "losses": "chart-losses"}


def _build(db_path: Path, studies: list[str], out_dir: Path, asr_threshold: float,
           comparison: bool, static: bool, tables=TABLES, plots=tuple(PLOTS)) -> Path:
    db_path, out_dir = Path(db_path), Path(out_dir)
    if not studies:
        raise XspecError("no studies to report")
    con = load.open_store(db_path)
    try:
        load.load(con, studies)
        context = pages.context(con, studies, asr_threshold, comparison,
                                db_path.resolve().parent, out_dir)
    finally:
        con.close()
    wanted = {PLOTS[name] for name in plots}
    context["charts"] = [chart for chart in context["charts"]
                         if chart.id in wanted or chart.id not in PLOTS.values()]
    context["tables"] = set(tables)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = {m["studies"][0]: f"../{m['href']}" for m in _manifests(out_dir.parent)
             if m.get("kind") == "study"}
    context.update(static=_export_static(context["charts"], out_dir, static), study_links=links,
                   javascript=javascript_bundle(), generated=_now())
    path = out_dir / "index.html"
    _write(path, environment().get_template("report.html.j2").render(**context))
    manifest = {"kind": "comparison" if comparison else "study", "studies": studies,
                "generated": context["generated"], "asr_threshold": asr_threshold}
    _write(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    build_index(db_path, out_dir.parent)
    return path


def build_report(db_path: Path, study: str, out_dir: Path, asr_threshold: float = 0.05,
                 static: bool = True, tables=TABLES, plots=tuple(PLOTS)) -> Path:
    """Write `out_dir/index.html` for `study` from the database at `db_path`; return its path.

    Also writes the main charts as PNG and SVG beside it (skip with static=False) and refreshes
    the index of reports in `out_dir`'s parent.

    Example: build_report(Path("xspec-work/xspec.duckdb"), "table2-cc6m",
    Path("xspec-work/reports/table2-cc6m"))
    """
    return _build(db_path, [study], out_dir, asr_threshold, comparison=False, static=static,
                  tables=tables, plots=plots)


def build_comparison(db_path: Path, studies: list[str], out_dir: Path,
                     asr_threshold: float = 0.05, static: bool = True) -> Path:
    """One report over several studies: every table gets a study column, charts a panel or
    series per study, and studies that differ only in their seed are also pooled
    (mean ± 95 % t interval across seeds). Returns `out_dir/index.html`.

    Example: build_comparison(Path("xspec-work/xspec.duckdb"), ["cc3m-s0", "cc3m-s1"],
    Path("xspec-work/reports/compare-cc3m"))
    """
    unique = list(dict.fromkeys(studies))
    return _build(db_path, unique, out_dir, asr_threshold, comparison=True, static=static)


INDEX = """
SELECT n.study, any_value(s.spec_path) AS spec_path,
    coalesce(max(n.updated), any_value(s.updated)) AS updated,
    count(*) AS nodes, count(*) FILTER (WHERE n.status = 'done') AS done,
    count(*) FILTER (WHERE n.status = 'failed') AS failed
FROM nodes n LEFT JOIN studies s ON s.name = n.study
GROUP BY n.study ORDER BY n.study
"""


def _manifests(reports_dir: Path) -> list[dict]:
    found = []
    for path in sorted(reports_dir.glob(f"*/{MANIFEST}")):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append({**manifest, "href": f"{path.parent.name}/index.html"})
    return found


def build_index(db_path: Path, reports_dir: Path) -> Path:
    """Write `reports_dir/index.html`: every study in the database (with a link to its report
    when there is one) and every comparison report found in `reports_dir`."""
    con = load.open_store(db_path)
    try:
        studies = pages.records(con.execute(INDEX).df())
    finally:
        con.close()
    manifests = _manifests(Path(reports_dir))
    links = {m["studies"][0]: m["href"] for m in manifests if m.get("kind") == "study"}
    for row in studies:
        row["href"] = links.get(row["study"])
    html = environment().get_template("index.html.j2").render(
        studies=studies, comparisons=[m for m in manifests if m.get("kind") == "comparison"],
        generated=_now())
    path = Path(reports_dir) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, html)
    return path
