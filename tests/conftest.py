import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests_support import BASE, registries_kept  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "specs" / "toy" / "mini.toml"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _own_default_workspace(tmp_path_factory, monkeypatch):
    """A command a test runs without -w uses a workspace of its own, never the ./xspec-work
    that `make quickstart` leaves in the checkout."""
    monkeypatch.setenv("XSPEC_WORKSPACE", str(tmp_path_factory.mktemp("default-ws")))


@pytest.fixture
def write_spec(tmp_path):
    """Write a TOML spec from text into tmp_path and return its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write




@pytest.fixture
def registries():
    """A test that registers plugin pieces: they are gone after it (`registries_kept`)."""
    with registries_kept():
        yield


@pytest.fixture
def base_spec() -> str:
    return BASE
