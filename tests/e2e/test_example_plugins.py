"""examples/plugins/: a study whose attack and cleaning defence live outside xspec runs end to
end, plans without torch, puts the plugins' fields and versions in the node ids, and no file
under xspec/ names them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xspec.errors import SpecError
from xspec.spec.load import load_spec
from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study, run_study
from tests_support import registries_kept  # conftest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugins"
SPEC = EXAMPLE / "study.toml"
NAMES = ("frequency_trigger", "isolate_unlearn", "FrequencySpec", "IsolateUnlearn")


@pytest.fixture(scope="module", autouse=True)
def _forget_plugins():
    """The plugins register into process-wide registries: undo that for the tests after these."""
    with registries_kept():
        yield


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    study = open_study(SPEC)
    workspace = Workspace(tmp_path_factory.mktemp("plugins"))
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    return study, workspace


def test_no_file_under_xspec_names_the_plugins():
    for path in (ROOT / "xspec").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".toml", ".json", ".j2", ".txt"):
            text = path.read_text(errors="ignore")
            assert not [n for n in NAMES if n in text], path


def test_plan_validates_plugin_fields_without_importing_torch():
    code = ("import sys; from xspec.study import open_study; "
            f"plan = open_study({str(SPEC)!r}).plan; "
            "print(len(plan.nodes), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(),
                         check=True).stdout.split()
    assert out == ["5", "False"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("frequencies = [[3, 5], [5, 3], [4, 4]]", "frequencies = [[3, 9]]",
     "variants[0]: attack: frequencies [(3, 9)] lie outside a 8x8 block (attack.block)"),
    ("fraction = 0.1", "fraction = 2",
     "variants[1]: clean.isolate_unlearn.fraction: input should be less than 1 (got 2)"),
    ("fraction = 0.1", "fractoin = 0.1", "variants[1]: clean.isolate_unlearn.fractoin: unknown "
     "key; allowed: ceiling, fraction, warmup_epochs, weight"),
])
def test_plugin_fields_are_validated_like_built_ins(tmp_path, old, new, expected):
    for name in ("frequency_trigger.py", "isolate_unlearn.py"):
        (tmp_path / name).write_text((EXAMPLE / name).read_text())
    (tmp_path / "study.toml").write_text(SPEC.read_text().replace(old, new))
    with pytest.raises(SpecError) as error:
        load_spec(tmp_path / "study.toml")
    assert [line.split(": ", 1)[1] for line in str(error.value).splitlines()] == [expected]


def test_a_missing_plugin_names_where_it_looked(write_spec, base_spec):
    path = write_spec(base_spec.replace('name = "t"', 'name = "t"\nplugins = ["nowhere_x"]'))
    with pytest.raises(SpecError, match=r"study.plugins: no plugin 'nowhere_x': neither .*"
                                        r"nowhere_x.py nor .*nowhere_x/ exists"):
        load_spec(path)


def test_plugin_versions_and_fields_enter_the_node_ids():
    plan = open_study(SPEC).plan
    poison = plan.of_kind("poison")[0]
    assert poison.identity["plugins"] == {"attack:frequency": "1"}
    assert poison.identity["frequencies"] == [[3, 5], [5, 3], [4, 4]]
    plain, defended = sorted(plan.of_kind("clean"), key=lambda n: "isolate_unlearn" in n.identity)
    assert "isolate_unlearn" not in plain.identity
    assert defended.identity["isolate_unlearn"]["fraction"] == 0.1
    assert defended.identity["plugins"] == {"defence:isolate_unlearn": "1"}  # the attack's: poison
    assert plain.deps == defended.deps


@pytest.mark.slow
def test_the_study_runs_and_the_defence_flags_left_poisons(finished):
    study, workspace = finished
    plain, defended = sorted(study.plan.of_kind("clean"),
                             key=lambda n: "isolate_unlearn" in n.identity)
    log = workspace.run_dir(defended).log_file.read_text()
    assert "isolate_unlearn: flagged 13 of 128 pairs before epoch 2" in log
    assert "flagged" not in workspace.run_dir(plain).log_file.read_text()
    import duckdb

    with duckdb.connect(str(workspace.db_path), read_only=True) as con:
        rows = con.execute("SELECT node_id, epoch, metric FROM metrics WHERE split = 'train' "
                           "AND metric = 'isolate_unlearn'").fetchall()
        asr = con.execute("SELECT count(*) FROM metrics WHERE metric = 'asr' AND n > 0"
                          ).fetchone()[0]
    assert {(r[0], r[1]) for r in rows} == {(defended.id, 1), (defended.id, 2)}
    assert asr > 0


@pytest.mark.slow
def test_a_node_process_imports_the_plugins_itself(finished):
    """The local and SLURM executors run nodes in fresh processes: node.json + settings are
    enough to find the plugin's behaviour again."""
    study, workspace = finished
    poison = study.plan.of_kind("poison")[0]
    run = workspace.run_dir(poison)
    manifest = json.loads((run.path / "manifest.json").read_text())
    (run.path / "manifest.json").unlink()
    run.set_status("pending")
    subprocess.run([sys.executable, "-m", "xspec.runtime.node", str(run.path),
                    study.settings().model_dump_json()], env=env(), check=True, cwd="/")
    assert json.loads((run.path / "manifest.json").read_text()) == manifest


def test_schema_shows_the_plugin_fields(monkeypatch):
    from typer.testing import CliRunner

    from xspec.cli import app

    monkeypatch.chdir(EXAMPLE)
    result = CliRunner().invoke(app, ["schema", "--plugin", "frequency_trigger",
                                      "--plugin", "isolate_unlearn"])
    assert result.exit_code == 0, result.output
    defs = json.loads(result.output)["$defs"]
    assert set(defs["FrequencySpec"]["properties"]) == {"kind", "target", "poisons", "block",
                                                        "magnitude", "frequencies"}
    assert "isolate_unlearn" in defs["Clean"]["properties"]
