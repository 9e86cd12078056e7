"""The rough edges a first plugin hit (issue 20), each fixed and pinned here."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xspec.cli import app
from xspec.errors import SpecError
from xspec.spec.load import load_spec
from tests_support import registries_kept  # conftest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugins"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _forget_plugins():
    """The plugins register into process-wide registries: undo that for the tests after these."""
    with registries_kept():
        yield


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command line: its error handler turns XspecError into one line, exit 1."""
    return subprocess.run([sys.executable, "-m", "xspec.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture
def study(tmp_path) -> Path:
    for name in ("study.toml", "frequency_trigger.py", "isolate_unlearn.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path / "study.toml"


def test_validate_and_data_check_take_w_like_every_command(study, tmp_path):
    result = runner.invoke(app, ["validate", str(study), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "No such option" not in result.output and "ok " in result.output


def test_report_on_a_missing_workspace_is_one_clear_line(study, tmp_path):
    missing = tmp_path / "nowhere"
    result = cli("report", str(study), "-w", str(missing))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {missing}: no such workspace; run the study first (xspec run SPEC -w "
        f"{missing}) or name the workspace it ran in with -w"]


def test_schema_takes_a_plugin_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["schema", "--plugin", str(EXAMPLE / "fine_pruning.py")])
    assert result.exit_code == 0, result.output
    assert '"fine_pruning"' in result.output and '"prune_ratio"' in result.output
    missing = cli("schema", "--plugin", str(tmp_path / "nope.py"))
    assert missing.returncode == 1 and "error: --plugin: plugin file" in missing.stderr
    assert "study.plugins" not in missing.stderr


def test_union_field_errors_name_the_key_not_pydantic_internals(study):
    plugin = study.parent / "frequency_trigger.py"
    text = plugin.read_text().replace(
        "class FrequencySpec(XspecModel):",
        "class FrequencySpec(XspecModel):\n"
        "    location: tuple[PositiveInt, PositiveInt] | Literal['random'] = 'random'\n", 1)
    plugin.write_text(text)
    study.write_text(study.read_text().replace("magnitude = 0.3",
                                               'magnitude = 0.3\nlocation = [1, "x"]'))
    with pytest.raises(SpecError) as error:
        load_spec(study)
    message = str(error.value)
    assert "attack.location[1]: input should be a valid integer" in message
    assert "function-before" not in message and "constrained-int" not in message


def test_a_plugin_importing_torch_at_module_level_is_noted(study):
    from xspec.study import open_study

    plugin = study.parent / "isolate_unlearn.py"
    plugin.write_text(plugin.read_text().replace("from pydantic import Field\n",
                                                 "import torch\nfrom pydantic import Field\n"))
    notes = open_study(study).plan.notes
    assert any("plugin 'isolate_unlearn' imports torch when it is imported" in n
               for n in notes), notes
    assert not any("frequency_trigger" in n for n in notes)


def test_runs_without_a_defence_show_off_not_a_dash():
    from xspec.reports.load import fallback

    assert fallback("clean.deep_cluster.k") == "off"  # a defence table, off on that run
    assert fallback("clean.l2_weight") == "0"  # a default the compiler leaves out
    assert fallback("clean.lr") is None


def test_plan_summary_shows_a_defence_off_value():
    from xspec.cli_plan import fact_values
    from xspec.study import open_study

    plan = open_study(EXAMPLE / "pruning.toml").plan
    assert fact_values(plan, "clean")["prune_ratio"] == ["off", "0.25"]


def test_report_names_the_attack_kind(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    import tests_reports_support as syn
    from xspec.reports.html import build_report

    db = tmp_path / "xspec.duckdb"
    syn.write_study(db, syn.STUDY)
    html = build_report(db, syn.STUDY, tmp_path / "r", static=False).read_text()
    assert ", attack badnet, seed" in html


def test_variant_notes_appear_in_the_report(study, tmp_path):
    from xspec.store.workspace import Workspace
    from xspec.study import open_study, report_study

    study.write_text(study.read_text().replace('"cleaning with isolate-and-unlearn"',
                                               '"unlearning <b>8</b> flagged pairs"'))
    (tmp_path / "ws").mkdir()
    page = report_study(open_study(study), Workspace(tmp_path / "ws"))
    notes = page.read_text().split('<ul class="notes"', 1)[1].split("</ul>", 1)[0]
    assert "variant 1 (no other setting):</span> cleaning without a defence" in notes
    assert ("variant 2 (clean.isolate_unlearn.fraction = 0.1; clean.isolate_unlearn.weight = "
            "0.5):</span> unlearning &lt;b&gt;8&lt;/b&gt; flagged pairs") in notes
