import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "specs" / "toy" / "mini.toml"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def write_spec(tmp_path):
    """Write a TOML spec from text into tmp_path and return its path."""

    def write(text: str, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


BASE = """
[study]
name = "t"
seed = 0

[data]
train = { format = "fashion_mnist", size = 256 }
clean = { size = 64 }
eval = { format = "fashion_mnist", split = "test", size = 64 }

[attack]
kind = "badnet"
target = "bag"
poisons = 16

[model]
arch = "xspec-vit-micro"

[pretrain]
objective = "mmcl"
epochs = 2

[clean]
lr = [1e-5, 2e-5]
epochs = 2
"""


@pytest.fixture
def base_spec() -> str:
    return BASE
