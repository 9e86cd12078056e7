"""`xspec submit` freezes the code: a job runs the package as it was at submit time, even when
the installed package is edited before the job starts (real SLURM, see conftest.py)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import xspec
from tests_executors_support import wait_until  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
STUDY = HERE / "snapshot_study.toml"
SUBMIT = """
import sys
from pathlib import Path
from xspec.study import open_study, submit_study
from xspec.store.workspace import Workspace
study = open_study(sys.argv[1])
jobs = submit_study(study, Workspace(sys.argv[2]), "slurm", {"time": "10",
                    "additional": {"begin": "now+8"}}, snapshot=sys.argv[3] == "1")
print(len(jobs))
"""


def _submit_then_edit(tmp_path: Path, snapshot: bool) -> Path:
    """Submit from a copy of the package (held 8 s by --begin), then edit that copy."""
    installed = tmp_path / "installed"
    shutil.copytree(Path(xspec.__file__).parent, installed / "xspec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    workspace = tmp_path / "ws"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-P", "-c", SUBMIT, str(STUDY), str(workspace),
                           "1" if snapshot else "0"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and int(done.stdout) == 3, done.stderr  # poison, pretrain, select
    init = installed / "xspec" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{xspec.__version__}"',
                                             '__version__ = "edited-after-submit"'))
    return workspace


def _provenance(workspace: Path) -> list[dict]:
    runs = sorted((workspace / "runs").iterdir())
    wait_until(lambda: all(json.loads((r / "status.json").read_text()).get("state") == "done"
                           if (r / "status.json").exists() else False for r in runs),
               "every job to finish")
    return [json.loads((r / "provenance.json").read_text()) for r in runs]


def test_jobs_run_the_code_as_submitted_not_as_edited_since(slurm_cluster, tmp_path):
    workspace = _submit_then_edit(tmp_path, snapshot=True)
    records = _provenance(workspace)
    (folder,) = (workspace / "code").iterdir()
    assert {r["xspec_version"] for r in records} == {xspec.__version__}
    assert {r["snapshot"] for r in records} == {folder.name}
    assert {r["package_dir"] for r in records} == {str(folder / "xspec")}
    assert json.loads((folder / "xspec" / "SNAPSHOT.json").read_text())["digest"].startswith(
        folder.name)


def test_without_a_snapshot_jobs_run_whatever_is_installed_when_they_start(slurm_cluster,
                                                                           tmp_path):
    workspace = _submit_then_edit(tmp_path, snapshot=False)
    records = _provenance(workspace)
    assert {r["xspec_version"] for r in records} == {"edited-after-submit"}
    assert {r["snapshot"] for r in records} == {None} and not (workspace / "code").exists()
