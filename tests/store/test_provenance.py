"""Every run records the code and machine that produced it (provenance.json, the `provenance`
table), and the report flags a table whose rows come from different code."""

import json
import subprocess

import torch

from xspec.compiler.plan import compile_spec
from xspec.reports import load, provenance as report_provenance
from xspec.runtime import provenance
from xspec.spec.load import load_spec
from xspec.store.db import connect, ingest
from xspec.store.provenance import code_key
from xspec.store.workspace import Workspace
from xspec.spec.tables.settings import RunSettings


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_code_version_names_the_commit_and_hashes_uncommitted_changes(tmp_path):
    repo = tmp_path / "checkout"
    package = repo / "pkg"
    package.mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    clean = provenance.code_version.__wrapped__(str(package))
    assert clean["git_commit"] == _git(repo, "rev-parse", "HEAD") and clean["git_dirty"] is None
    (package / "a.py").write_text("x = 2\n")
    edited = provenance.code_version.__wrapped__(str(package))
    (package / "b.py").write_text("y = 1\n")
    added = provenance.code_version.__wrapped__(str(package))
    assert edited["git_commit"] == clean["git_commit"]
    assert len({None, edited["git_dirty"], added["git_dirty"]}) == 3
    outside = provenance.code_version.__wrapped__(str(tmp_path / "elsewhere"))
    assert outside["git_commit"] is None


def test_a_node_start_records_code_plugins_machine_and_keeps_epoch_times(tmp_path):
    run = Workspace(tmp_path).runs / "clean-x"
    run.mkdir(parents=True)
    from xspec.store.workspace import RunDir

    run = RunDir(run)
    plugin = tmp_path / "myattack.py"
    plugin.write_text("VALUE = 1\n")
    settings = RunSettings(plugins=[{"name": "myattack", "path": str(plugin)}])
    provenance.start(run, settings, torch.device("cpu"))
    provenance.add_epoch(run, 1, 12.5)
    record = json.loads((run.path / "provenance.json").read_text())
    import hashlib
    import open_clip
    import xspec

    assert record["xspec_version"] == xspec.__version__
    assert record["plugins"] == {"myattack:myattack.py":
                                 hashlib.sha256(b"VALUE = 1\n").hexdigest()}
    assert (record["torch"], record["open_clip"]) == (torch.__version__, open_clip.__version__)
    assert record["device_count"] == 1 and record["host"] and record["epoch_seconds"] == {"1": 12.5}
    plugin.write_text("VALUE = 2\n")  # resumed with an edited plugin
    provenance.start(run, settings, torch.device("cpu"))
    again = json.loads((run.path / "provenance.json").read_text())
    assert again["epoch_seconds"] == {"1": 12.5}
    assert again["previous"][0]["plugins"] == record["plugins"] != again["plugins"]


def test_rows_from_different_code_are_flagged_in_the_report(write_spec, base_spec, tmp_path):
    plan = compile_spec(load_spec(write_spec(base_spec)))
    workspace = Workspace(tmp_path / "ws")
    cleans = plan.of_kind("clean")
    for node in plan.nodes.values():
        run = workspace.prepare(node)
        run.set_status("done")
        record = {"xspec_version": "0.1.0", "git_commit": "a" * 40, "git_dirty": None,
                  "plugins": {}, "torch": "2.x", "open_clip": "3.3.0", "device_count": 1,
                  "host": "h", "device_name": "cpu", "started": 1.0, "epoch_seconds": {"1": 2.0}}
        if node.id in {n.id for n in cleans[1:]}:
            record["git_commit"] = "b" * 40
        (run.path / "provenance.json").write_text(json.dumps(record))
    ingest(workspace, plan)
    with connect(workspace.db_path, read_only=True) as con:
        rows = con.execute("SELECT node_id, git_commit, code, epoch_seconds FROM provenance"
                           ).fetchall()
        assert len(rows) == len(plan.nodes)
        assert {r[1][:1] for r in rows if r[0] in {n.id for n in cleans}} == {"a", "b"}
        assert json.loads(rows[0][3]) == {"1": 2.0}
        load.load(con, [plan.study])
        section = report_provenance.section(con)
    assert section["mixed"] == {"best_clean_accuracy": 2}  # pretrain rows: one version
    assert {v["git_commit"] for v in section["versions"]} == {"a" * 12, "b" * 12}
    assert code_key({"git_commit": "a" * 40}) != code_key({"git_commit": "b" * 40})
