"""What tells the nodes of one kind apart, each setting once, under its shortest clear name.

A node's lineage holds its own config and its upstream chain's under dotted prefixes, each
spec setting under one key (`xspec.compiler.lineage`: the training pairs are `poison.train`,
the seed `poison.seed`, whichever node reads them). Every lineage key that varies between the
nodes of a kind is one fact, named by the shortest ending of its key that no other key of the
kind shares (`poisons`, `train.size`, `pretrain.lr` beside the cleaning `lr`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xspec.compiler.lineage import as_own, own_prefixes


@dataclass(frozen=True)
class Fact:
    name: str
    key: str  # the lineage key it reads

    def value(self, node):
        return node.lineage.get(self.key)


def facts(kind: str, nodes: list) -> list[Fact]:
    keys = sorted({k for n in nodes for k in n.lineage})
    varying = [k for k in keys if len({repr(n.lineage.get(k)) for n in nodes}) > 1]
    # Named and ordered as the nodes' own configs hold them: the training pairs a pretrain
    # node reads are `train.path` on it, though its lineage shows them as `poison.train.path`.
    prefixes = own_prefixes(nodes)
    own = {k: as_own(k, prefixes) for k in keys}
    varying.sort(key=lambda k: (not own[k].startswith(kind + "."), own[k]))
    paths = [_path(kind, own[k]) for k in varying]
    # A constant key of the node's own config still claims its name: an upstream
    # `pretrain.objective` is not shown as `objective` on a cleaning node.
    universe = paths + [_path(kind, own[k]) for k in keys
                        if own[k].startswith(kind + ".") and k not in varying]
    return [Fact(_short(path, universe), key) for path, key in zip(paths, varying)]


def _path(kind: str, key: str) -> list[str]:
    return key.removeprefix(kind + ".").split(".")


def _short(path: list[str], paths: list[list[str]]) -> str:
    for length in range(1, len(path) + 1):
        ending = path[-length:]
        if sum(p[-length:] == ending for p in paths) == 1:
            return ".".join(ending)
    return ".".join(path)


def show(value) -> str:
    """A value as a person writes it: 1e-4, not 0.0001; mmcl+ssl, not 'mmcl+ssl'."""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def node_name(kind: str, node, kind_facts: list[Fact]) -> str:
    parts = [f"{f.name}={show(f.value(node))}" for f in kind_facts if f.value(node) is not None]
    return f"{kind}@{','.join(parts)}" if parts else kind
