"""What tells the nodes of one kind apart, each fact once, under its shortest clear name.

A node's lineage holds its own config and its upstream chain's under dotted prefixes, so one
spec value can appear several times (`poison.train.size`, `pretrain.train.size`; the attack is
the poison config's alone, so `poison.poisons` appears once). Keys that end in the same word and take the same value in every node
of the kind are one fact; it is named by the shortest ending of its key that no other fact of
the kind shares (`poisons`, `train.size`, `pretrain.lr` beside the cleaning `lr`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    name: str
    keys: tuple[str, ...]  # the lineage keys it stands for; the first is read

    def value(self, node):
        return node.lineage.get(self.keys[0])


def facts(kind: str, nodes: list) -> list[Fact]:
    keys = sorted({k for n in nodes for k in n.lineage})
    varying = [k for k in keys if len({repr(n.lineage.get(k)) for n in nodes}) > 1]
    groups: dict[tuple, list[str]] = {}
    for key in varying:
        signature = (key.rsplit(".", 1)[-1], tuple(repr(n.lineage.get(key)) for n in nodes))
        groups.setdefault(signature, []).append(key)
    chosen = [sorted(group, key=lambda k: (not k.startswith(kind + "."), k.count("."), k))
              for group in groups.values()]
    chosen.sort(key=lambda g: (not g[0].startswith(kind + "."), varying.index(g[0])))
    paths = [_path(kind, group[0]) for group in chosen]
    # A constant key of the node's own config still claims its name: an upstream
    # `pretrain.objective` is not shown as `objective` on a cleaning node.
    universe = paths + [_path(kind, k) for k in keys
                        if k.startswith(kind + ".") and k not in varying]
    return [Fact(_short(path, universe), tuple(group)) for path, group in zip(paths, chosen)]


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
