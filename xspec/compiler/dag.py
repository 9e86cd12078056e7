"""The plan's data: content-addressed nodes and the DAG of one compiled study."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xspec.compiler.naming import Fact
from xspec.extend.registry import rank
from xspec.spec.base import id_dump


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    config: Any  # its kind's config model (`NodeKind.config_model`); a dict for kinds without
    deps: tuple[str, ...]
    lineage: dict
    name: str = ""
    dep_runs: tuple[str, ...] = ()
    dep_kinds: tuple[str, ...] = ()  # stages find dependencies by kind, never by name
    identity: dict = field(default=None, compare=False, repr=False)
    """The config as the id is made of (`xspec.spec.base.id_dump`): JSON."""
    study: str = field(default="", compare=False)
    """The study whose compilation made it (a node another study made keeps that study's)."""
    owners: dict = field(default_factory=dict, compare=False, repr=False)
    """{setting: lineage key}: where its lineage shows each `Setting` (`compiler.lineage`)."""
    holds: dict = field(default_factory=dict, compare=False, repr=False)
    """{setting: the lineage key its own copy would have}, for the settings its config holds."""

    def __post_init__(self):
        if self.identity is None:
            object.__setattr__(self, "identity", id_dump(self.config))

    @property
    def short(self) -> str:
        return self.id[:12]

    @property
    def run_name(self) -> str:
        return f"{self.kind}-{self.short}"


@dataclass
class Plan:
    study: str
    spec_path: str
    nodes: dict[str, Node] = field(default_factory=dict)
    varying: dict[str, list[str]] = field(default_factory=dict)
    facts: dict[str, list[Fact]] = field(default_factory=dict)  # per kind: what tells apart
    notes: list[str] = field(default_factory=list)
    # `[study] notes` and each [[variants]] table's (`xspec.spec.notes`): for the report.
    study_notes: list[dict] = field(default_factory=list)
    # Nodes of other studies this one takes inputs from: id -> (their study, hops away).
    external: dict[str, tuple[str, int]] = field(default_factory=dict)
    parents: tuple[str, ...] = ()  # the specs whose compilation asked for this one
    upstream: dict = field(default_factory=dict, repr=False)  # spec path -> its plan (a cache)
    # Dataset path -> the pair count its spec expects (`expected_size`): for the estimate only.
    expected_sizes: dict[str, int] = field(default_factory=dict)
    # Canonical JSON of an attack table -> the nodes its poisoning depends on (its `upstream`).
    attack_deps: dict[str, tuple] = field(default_factory=dict, repr=False)

    def ordered(self) -> list[Node]:
        """Dependency order: the farthest upstream study first, then kind by kind (a node
        downstream of a later kind, e.g. a pretrain node after a detect node, comes after it)."""
        levels = _levels(self.nodes)
        return sorted(self.nodes.values(), key=lambda n: (
            -self.external.get(n.id, ("", 0))[1], levels[n.id]))

    def own(self) -> list[Node]:
        return [n for n in self.ordered() if n.id not in self.external]

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.ordered() if n.kind == kind]


def _levels(nodes: dict[str, Node]) -> dict[str, float]:
    """Each node's kind rank, raised to just above its highest dependency's level."""
    levels: dict[str, float] = {}

    def level(node: Node) -> float:
        if node.id not in levels:
            above = [level(nodes[d]) + 0.5 for d in node.deps if d in nodes]
            levels[node.id] = max([rank(node.kind), *above])
        return levels[node.id]

    for node in nodes.values():
        level(node)
    return levels
