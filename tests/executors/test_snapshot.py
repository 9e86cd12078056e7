"""The code snapshot `xspec submit` takes: content-hashed, reused, and what jobs import."""

import shlex
import subprocess

from xspec.executors.local import WORKER_PYTHON
from xspec.executors.snapshot import freeze, frozen_settings
from xspec.spec.tables.settings import RunSettings


def test_a_snapshot_is_content_hashed_and_shared(tmp_path):
    plugin = tmp_path / "study" / "myplugin.py"
    plugin.parent.mkdir()
    plugin.write_text("MARK = 1\n")
    plugins = [{"name": "myplugin", "path": str(plugin)}]
    first = freeze(tmp_path / "ws", plugins)
    assert freeze(tmp_path / "ws", plugins) == first  # same code: the same folder
    assert (first.path / "plugins" / "myplugin.py").read_text() == "MARK = 1\n"
    assert (first.path / "xspec" / "runtime" / "node.py").is_file()
    assert (first.path / "xspec" / "data" / "model_configs" / "xspec-vit-micro.json").is_file()
    plugin.write_text("MARK = 2\n")
    second = freeze(tmp_path / "ws", plugins)
    assert second.digest != first.digest
    assert sorted(p.name for p in (tmp_path / "ws" / "code").iterdir()) == sorted(
        [first.digest, second.digest])
    settings = frozen_settings(RunSettings(plugins=plugins, threads=1), first, WORKER_PYTHON)
    assert settings.threads == 1 and settings.plugins[0]["path"] == str(first.path / "plugins" / "myplugin.py")
    command = shlex.split(settings.worker_python) + [
        "-c", "import os, xspec; print(xspec.__file__, os.environ['XSPEC_SNAPSHOT'])"]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""}, cwd=tmp_path)
    assert out.stdout.split() == [str(first.path / "xspec" / "__init__.py"), first.digest]
