"""Shared test data importable from any test module (tests/ is put on sys.path by conftest)."""

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
