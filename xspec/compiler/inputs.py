"""Inputs from other studies: `{ study = "other.toml", node = "select" }` in a spec.

The other study is compiled on its own (its spec path is resolved against the naming spec by the
loader), the named node is picked, and that node with everything it depends on joins this plan.
Ids are content hashes, so a node both studies need is one node, run once in the workspace;
`xspec run` and `xspec submit` run what is missing upstream first. Upstream nodes are marked
`external` (with their study's name): they run with this plan but are reported by their own;
except for `clean.start`, where the model being cleaned and its pre-training are part of this
study (its report shows the starting model), as if the spec had pre-trained it itself.
"""

from __future__ import annotations

from pathlib import Path

from xspec.errors import CompileError, XspecError
from xspec.spec.base import id_dump
from xspec.spec.load import load_spec

# What each kind of node hands on: a checkpoint (selected.json or its last epoch's weights).
CHECKPOINT_KINDS = ("pretrain", "select", "shrink_perturb", "clean")


def resolve(plan, ref, key: str, compile_spec, kinds: tuple[str, ...] = CHECKPOINT_KINDS,
            external: bool = True):
    """The node `ref` names; it and its ancestors are added to `plan`, as external nodes or,
    with `external=False` (the model a cleaning-only study cleans), as this study's own.
    `compile_spec` compiles the other study (`xspec.compiler.plan.compile_spec`, passed in: a
    study's compilation recurses into the studies it names)."""

    path = str(Path(ref.study).resolve())
    chain = (*plan.parents, str(Path(plan.spec_path).resolve()))
    if path in chain:
        cycle = " -> ".join(Path(p).name for p in (*chain[chain.index(path):], path))
        raise CompileError(f"{key}: studies name each other's outputs in a cycle: {cycle}")
    if path not in plan.upstream:  # every variant of a sweep names it: compile it once
        try:
            plan.upstream[path] = compile_spec(load_spec(path), parents=chain)
        except XspecError as exc:
            raise CompileError(f"{key}: in the study it names ({ref.study}): {exc}") from None
    upstream = plan.upstream[path]
    node = _pick(upstream, ref, key)
    if node.kind not in kinds:
        raise CompileError(f"{key}: {node.name} of study {upstream.study!r} is a {node.kind} "
                           f"node; need one of: {', '.join(kinds)}")
    needed = {n.id for n in ancestors(upstream, node)}
    for ancestor in (n for n in upstream.ordered() if n.id in needed):  # its run order
        if ancestor.id not in plan.nodes:
            plan.nodes[ancestor.id] = ancestor
            if external or ancestor.id in upstream.external:
                study, hops = upstream.external.get(ancestor.id, (upstream.study, 0))
                plan.external[ancestor.id] = (study, hops + 1)
    for note in upstream.notes:
        if f"{upstream.study}: {note}" not in plan.notes:
            plan.notes.append(f"{upstream.study}: {note}")
    return node, upstream.study


def _pick(upstream, ref, key: str):
    if "@" in ref.node or ref.node not in {n.kind for n in upstream.nodes.values()}:
        named = [n for n in upstream.nodes.values() if n.name == ref.node]
        if len(named) == 1:
            return named[0]
        names = ", ".join(n.name for n in upstream.ordered())
        raise CompileError(f"{key}: study {upstream.study!r} has no node {ref.node!r}; "
                           f"its nodes: {names}")
    own = [n for n in upstream.of_kind(ref.node) if n.id not in upstream.external]
    chosen = [n for n in own if all(_has(n, k, v) for k, v in ref.where.items())]
    if len(chosen) != 1:
        which = f" with {_settings(ref.where)}" if ref.where else ""
        names = ", ".join(n.name for n in (chosen or own))
        raise CompileError(f"{key}: study {upstream.study!r} has {len(chosen)} {ref.node} "
                           f"nodes{which}; name one (by its name or `where`): {names}")
    return chosen[0]


def _has(node, key: str, value) -> bool:
    """Every lineage key that is `key` or ends in `.key` holds `value` (and one does)."""
    found = [v for k, v in node.lineage.items() if k == key or k.endswith(f".{key}")]
    return bool(found) and all(v == value for v in found)


def _settings(where: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items())


def ancestors(plan, node) -> list:
    """`node` and every node it depends on, directly or not."""
    seen, todo = {}, [node]
    while todo:
        current = todo.pop()
        if current.id not in seen:
            seen[current.id] = current
            todo += [plan.nodes[d] for d in current.deps]
    return list(seen.values())


def started_upstream(plan, spec, compile_spec):
    """(start, poison, pretrain) for clean.start: the other study's node cleaning starts from,
    and the poison and pre-training nodes behind it, after checking that this spec's attack and
    training set are that study's (cleaning evaluates ASR with them and draws from that pool)."""
    start, study = resolve(plan, spec.clean.start, "clean.start", compile_spec,
                           ("select", "shrink_perturb", "pretrain", "clean"), external=False)
    node = start
    while node.kind != "pretrain":  # clean -> its start, shrink_perturb -> select -> pretrain
        node = plan.nodes[node.deps[0]]
    poison = plan.nodes[node.deps[0]]
    if poison.config.attack != spec.attack:
        raise CompileError(f"clean.start: {start.name} of study {study!r} was poisoned with "
                           f"{id_dump(poison.config.attack)}; [attack] here must be the same, "
                           "since ASR is measured with it")
    if spec.data.train != poison.config.train:
        raise CompileError(f"clean.start: study {study!r} trained on "
                           f"{id_dump(poison.config.train)}; "
                           "data.train here must be the same (the cleaning pool and its "
                           "poison manifest are that set's)")
    if spec.clean.optimizer == "pretrain":
        raise CompileError("clean.optimizer = 'pretrain' needs this study's own pre-training "
                           "(its optimizer state); not with clean.start")
    return start, poison, node
