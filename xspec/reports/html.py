"""Self-contained HTML report of one study.

The Vega, Vega-Lite and vega-embed JavaScript comes from `vl_convert` (no network) and is inlined
once; each chart is a Vega-Lite spec passed to `vegaEmbed`. Jinja2 autoescapes every value, and
the `tojson` filter escapes `<`, `>`, `&` and `'` inside embedded JSON, so a name holding
`</script>` stays data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import duckdb
import jinja2
import markupsafe
import pandas as pd
import vl_convert

from xspec.errors import XspecError
from xspec.reports import charts, queries

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ChartBlock:
    id: str
    title: str
    caption: str
    spec: dict


@functools.cache
def javascript_bundle() -> markupsafe.Markup:
    """vega + vega-lite + vega-embed as one script, matching altair's Vega-Lite version."""
    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    known = vl_convert.get_vegalite_versions()
    bundle = vl_convert.javascript_bundle(vl_version=version if version in known else None)
    if "</script" in bundle.lower():
        raise RuntimeError("the vl_convert bundle contains '</script' and cannot be inlined")
    return markupsafe.Markup(bundle)


def pct(value: float | None) -> str:
    """0.2376 -> '23.76%'; missing values as an em dash."""
    return "—" if value is None or pd.isna(value) else f"{100 * value:.2f}%"


def short_pct(value: float) -> str:
    """A threshold without trailing zeros: 0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{100 * value:g}%"


def signed_pct(value: float | None) -> str:
    """A value already in percent, with its sign: -45.3 -> '-45.30%'."""
    return "—" if value is None or pd.isna(value) else f"{value:+.2f}%"


def sci(value: float | None) -> str:
    """Learning rates as short scientific notation: 5e-07 -> '5e-7', 2.5e-05 -> '2.5e-5'."""
    if value is None or pd.isna(value):
        return "—"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=pct, short_pct=short_pct, signed_pct=signed_pct, sci=sci)
    return env


def _spec(chart: alt.TopLevelMixin) -> dict:
    spec = chart.to_dict()
    spec.pop("$schema", None)
    return spec


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN/NaT turned into None, for the template."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _chart_blocks(con, study: str, asr_threshold: float) -> list[ChartBlock]:
    points = queries.cleaning_points(con, study)
    starts = queries.starting_points(con, study)
    curves = queries.pretrain_curves(con, study)
    threshold = short_pct(asr_threshold)
    blocks = []
    if len(points):
        blocks.append(ChartBlock(
            "chart-pareto", "Accuracy vs ASR after each cleaning epoch",
            f"Every cleaning epoch of every run; colour is the learning rate, shape the cleaning "
            f"objective. The red diamond is the starting model; the green band is ASR ≤ "
            f"{threshold} (successful cleaning).",
            _spec(charts.pareto_chart(points, starts, asr_threshold))))
        blocks.append(ChartBlock(
            "chart-trajectories", "Cleaning trajectories",
            "Each line is one cleaning run from its starting model (epoch 0); points grow with "
            "the epoch.",
            _spec(charts.trajectory_chart(points))))
    if len(curves):
        blocks.append(ChartBlock(
            "chart-pretrain", "Pre-training curves",
            "Zero-shot top-1 accuracy, ASR and training loss per pre-training epoch.",
            _spec(charts.pretrain_curve_chart(curves))))
    return blocks


def _context(con, study: str, asr_threshold: float) -> dict:
    return {
        "study": study,
        "asr_threshold": asr_threshold,
        "counts": _records(queries.node_counts(con, study)),
        "table2": _records(queries.table2(con, study, asr_threshold)),
        "starts": _records(queries.starting_points(con, study)),
        "runs": _records(queries.run_table(con, study)),
        "charts": _chart_blocks(con, study, asr_threshold),
        "javascript": javascript_bundle(),
    }


def _connect_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    if not Path(db_path).is_file():
        raise XspecError(f"{db_path}: no results database; run or ingest the study first")
    return duckdb.connect(str(db_path), read_only=True)


def build_report(db_path: Path, study: str, out_dir: Path, asr_threshold: float = 0.05) -> Path:
    """Write `out_dir/index.html` for `study` from the database at `db_path`; return its path.

    Example: build_report(Path("xspec-work/xspec.duckdb"), "table2-cc6m",
    Path("xspec-work/reports/table2-cc6m"))
    """
    con = _connect_read_only(db_path)
    try:
        found = con.execute("SELECT count(*) FROM nodes WHERE study = ?", [study]).fetchone()[0]
        if not found:
            raise XspecError(f"{db_path}: no nodes for study {study!r}")
        context = _context(con, study, asr_threshold)
    finally:
        con.close()
    html = _environment().get_template("study.html.j2").render(**context)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
