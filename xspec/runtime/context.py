"""What a stage function gets: its node, its run folder, the workspace and run settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from xspec.runtime.distributed import Dist
from xspec.store.workspace import RunDir, Workspace

STAGES: dict[str, Callable] = {}


def stage(kind: str):
    def decorate(fn):
        STAGES[kind] = fn
        return fn

    return decorate


@dataclass
class Context:
    node: dict
    run: RunDir
    workspace: Workspace
    settings: dict
    device: torch.device
    log: Callable[[str], None] = print
    progress: Callable | None = None
    dist: Dist = field(default_factory=Dist)

    @property
    def config(self) -> dict:
        return self.node["config"]

    def dep(self, kind: str) -> RunDir:
        for name in self.node["dep_runs"]:
            if name.startswith(f"{kind}-"):
                return RunDir(self.workspace.runs / name)
        raise KeyError(f"node {self.node['name']} has no {kind} dependency")
