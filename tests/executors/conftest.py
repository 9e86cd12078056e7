"""A real single-node SLURM for the tests marked `slurm`, started by scripts/slurm_up.sh.

Without SLURM (no `sbatch`, not root, or the script fails) those tests are skipped with the
reason; set XSPEC_REQUIRE_SLURM=1 (as CI does) to make that an error instead.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: needs a real SLURM (scripts/slurm_up.sh starts one)")


def _unavailable(reason: str):
    if os.environ.get("XSPEC_REQUIRE_SLURM"):
        pytest.fail(f"XSPEC_REQUIRE_SLURM is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _controller_up() -> bool:
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                              timeout=10).stdout.count("UP") > 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start SLURM if it is not running; stop it afterwards only if this fixture started it."""
    if shutil.which("sbatch") is None:
        _unavailable("SLURM is not installed (no sbatch): "
                     "apt-get install slurmctld slurmd slurm-client munge")
    was_up = _controller_up()
    try:
        started = subprocess.run([str(ROOT / "scripts" / "slurm_up.sh")], capture_output=True,
                                 text=True, timeout=180)
    except subprocess.TimeoutExpired:
        _unavailable("scripts/slurm_up.sh did not finish within 180 s")
    if started.returncode != 0:
        _unavailable(f"scripts/slurm_up.sh failed: {started.stderr.strip() or started.stdout}")
    yield
    if not was_up:
        subprocess.run([str(ROOT / "scripts" / "slurm_down.sh")], capture_output=True, timeout=60)
