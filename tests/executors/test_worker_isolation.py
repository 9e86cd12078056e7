"""A node worker never imports from the folder `xspec run` is typed in (issue 19): a json.py
lying there used to run inside every node, with no plugin declared."""

from xspec.executors.local import LocalExecutor
from xspec.store.workspace import Workspace
from xspec.study import open_study
from xspec.spec.tables.settings import RunSettings


class _Claim:
    def set_worker(self, pid: int) -> None:
        self.pid = pid


def test_a_json_py_in_the_current_folder_is_not_imported_by_the_worker(
        write_spec, base_spec, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "json.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                 "from _json import *\n")
    study = open_study(write_spec(base_spec))
    workspace = Workspace(tmp_path / "ws")
    poison = study.plan.of_kind("poison")[0]
    workspace.prepare(poison)
    monkeypatch.chdir(cwd)
    proc, stderr = LocalExecutor._start(workspace, [poison], RunSettings(threads=1),
                                        {poison.id: _Claim()})
    assert proc.wait(timeout=300) == 0, stderr.read_text()
    assert not marker.exists()
    assert workspace.state(poison) == "done"


def test_a_truncated_node_json_fails_the_worker_naming_the_file(tmp_path):
    import subprocess

    from xspec.executors.local import WORKER_PYTHON
    from xspec.store.workspace import RunDir

    run = RunDir(tmp_path / "ws" / "runs" / "poison-x")
    run.path.mkdir(parents=True)
    run.node_file.write_text('{"id": "abc", "ki')
    proc = subprocess.run([*WORKER_PYTHON, "-m", "xspec.runtime.node", str(run.path), "{}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert run.status()["error"].startswith(f"{run.node_file} (the node's record) is unreadable")
