"""Compiling a loaded spec into a plan: a DAG of content-addressed nodes.

poison ──▶ pretrain ──▶ select ──▶ [defence start nodes, e.g. shrink_perturb] ──▶ clean
   └──────────────────────────────────────────────────────▲  (reads the poison manifest)

Node kinds, attacks, defences and policies come from the registries (`xspec.extend`): a
defence with a `start` hook adds the node cleaning starts from; one with behaviour adds its
field to the clean node's config, only when it is on, so adding a defence keeps existing ids.
A plugin's declared version enters the config of the nodes that use it (`plugins`).

Pure: no torch, no I/O beyond stat-ing the files a spec names.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from xspec.compiler.dag import Node, Plan
from xspec.compiler.hashing import canonical_json, node_id
from xspec.compiler import inputs
from xspec.compiler.lineage import own_lineage, pool_copies
from xspec.compiler.naming import facts, node_name
from xspec.errors import CompileError
from xspec.compiler.configs import typed
from xspec.spec.base import id_dump
from xspec.compiler.evalsets import sets_config, target_notes
from xspec.compiler.decree import decree_nodes
from xspec.compiler.detect import detect_node
from xspec.compiler.pretrain_defences import with_pretrain_defences
from xspec.extend.registry import (
    ATTACKS, DATA_SOURCES, METRICS, NODE_KINDS, POLICIES, defences_of, kind_order,
)
from xspec.extend.registry import resolve as resolve_ref
from xspec.spec.archs import is_config_file, known_archs
from xspec.spec.load import LoadedSpec
from xspec.spec.policies import parse_policy
from xspec.spec.schema import Spec, StudyOutput, Training

LARGE_PLAN = int(os.environ.get("XSPEC_LARGE_PLAN", 10_000))  # nodes; above it a warning


def _add(plan: Plan, kind: str, values: dict, deps: tuple[Node, ...],
         inputs: dict[str, tuple[Node, str]] | None = None,
         copies: dict[str, str] | None = None) -> Node:
    """A node of `kind` whose config is its kind's model built from `values` (field values,
    typed or JSON). `inputs` ({config key: (node, what it is)}) are dependencies whose lineage
    is not merged (another study's model, a detect node's scores, an attack's trigger): in the
    id and the run order; the lineage says what they are ("study:node"; None: nothing).
    `copies` ({config path: setting}) marks fields that copy a setting in this node only
    (`xspec.compiler.lineage`)."""
    inputs = inputs or {}
    registered = NODE_KINDS.get(kind)
    model = registered.config_model()
    config = values if model is None else typed(model, values, f"{kind} node")
    identity = id_dump(config)
    everything = deps + tuple(node for node, _ in inputs.values())
    nid = node_id(kind, identity, tuple(d.id for d in everything), registered.version)
    plan.external.pop(nid, None)  # this study makes the node too: it is its own
    if nid not in plan.nodes:
        lineage: dict = {}
        owners: dict[str, str] = {}
        holds: dict[str, str] = {}
        for dep in reversed(deps):  # the first dependency is the node's own chain: it wins
            lineage.update(dep.lineage)
            if dep.study == plan.study:
                owners.update(dep.owners)
        lineage.update(own_lineage(kind, model, identity, owners, holds, copies))
        for key, (node, label) in inputs.items():
            lineage.pop(f"{key}.input", None)
            if label is not None:
                lineage[key] = label
            if kind == "pseudo_labels":  # what it runs (a pretrain node has its own arch)
                lineage[f"{key}.arch"] = node.lineage["pretrain.model.arch"]
        plan.nodes[nid] = Node(nid, kind, config, tuple(d.id for d in everything), lineage,
                               dep_runs=tuple(d.run_name for d in everything),
                               dep_kinds=tuple(d.kind for d in everything), identity=identity,
                               study=plan.study, owners=owners, holds=holds)
    return plan.nodes[nid]


def _fingerprint(plan: Plan, path: str, key: str) -> dict:
    """Identify a file a node reads by path, size and mtime, so replacing it changes the id.

    A file missing here still plans (a cluster spec is planned on a laptop); the plan notes
    it, and the nodes that need it fail with the path when run."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        note = f"{key}: {path}: {exc.strerror}; runs that read it will fail until it exists"
        if note not in plan.notes:
            plan.notes.append(note)
        return {"path": path, "missing": True}
    return {"path": path, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _eval_config(spec: Spec) -> dict:
    """`folder_labels`: a source that labels by folder name says so (ImageFolder: its labels
    came from sorted folder order once; new ids for such studies only)."""
    return {"source": spec.data.eval, "templates": spec.data.templates,
            "metrics": list(spec.evaluate.metrics),
            "folder_labels": getattr(spec.data.eval, "folder_labels", None), **sets_config(spec)}


@dataclass(frozen=True)
class Chain:
    """The upstream part of one variant: its poison and pre-training nodes."""

    spec: Spec
    poison: Node
    pretrain: Node
    start: Node | None = None  # clean.start: another study's node that cleaning starts from

    @functools.cached_property
    def matches(self) -> str | None:
        """The objective of the run whose selected accuracy this one's policy matches."""
        if self.start is not None:
            return None
        return parse_policy(self.spec.pretrain.select).reference


def _versions(spec: Spec, defences: bool = False, evaluates: bool = True) -> dict:
    """{"plugins": {"metric:name": version, ...}} for the plugin pieces a node uses. The attack's
    is the poison node's alone: its dependants' ids follow it."""
    used = [] if evaluates else [("attack", ATTACKS.get(spec.attack.kind))]
    if evaluates:
        used += [("metric", METRICS.get(name)) for name in spec.evaluate.metrics]
    used += [("data", DATA_SOURCES.get(source.format)) for source in (
        spec.data.train, spec.data.eval, spec.data.clean.source) if not isinstance(source, str)]
    if defences:
        used += [("defence", d) for d in defences_of("clean")
                 if d.active(getattr(spec.clean, d.name))]
    found = {f"{what}:{getattr(p, 'kind', None) or getattr(p, 'format', None) or p.name}":
             p.version for what, p in used if p.version}
    return {"plugins": dict(sorted(found.items()))}


def _shared(spec: Spec) -> dict:
    """What every node that evaluates carries. Not the attack: it is the poison node's config
    alone, and a node that needs it reads it from there (`runtime.handoffs.upstream_attack`)."""
    return {"eval": _eval_config(spec), "seed": spec.study.seed, **_versions(spec)}


def _training(section) -> dict:
    """A `[pretrain]`/`[clean]` table's training fields (those of `Training`)."""
    return {name: getattr(section, name) for name in Training.model_fields}


class Builder:
    """What a defence's `start` hook gets: add nodes to the plan, the config every node shares."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def add(self, kind: str, values: dict, deps: tuple[Node, ...],
            inputs: dict[str, tuple[Node, str]] | None = None) -> Node:
        return _add(self.plan, kind, values, deps, inputs)

    def input(self, ref, key: str) -> tuple[Node, str]:
        """Another study's node (`{ study, node }` at spec key `key`) joined to this plan:
        (the node, "study:node" for the lineage)."""
        node, study = inputs.resolve(self.plan, ref, key, compile_spec)
        return node, f"{study}:{node.name}"

    def shared(self, spec: Spec) -> dict:
        return _shared(spec)

    def fingerprint(self, path: str, key: str) -> dict:
        return _fingerprint(self.plan, path, key)


def _attack_inputs(plan: Plan, spec: Spec) -> Spec:
    """The spec with its attack table as the attack's `upstream` hook completes it (naming the
    nodes it adds, e.g. BadCLIP's trigger optimisation); those nodes are the poison node's."""
    hook = ATTACKS.get(spec.attack.kind).upstream
    if hook is None:
        return spec
    attack, nodes = resolve_ref(hook)(Builder(plan), spec)
    plan.attack_deps[canonical_json(id_dump(attack))] = tuple(nodes)
    return spec.model_copy(update={"attack": attack})


def _resolve(plan: Plan, ref: StudyOutput, key: str) -> tuple[Node, str]:
    return inputs.resolve(plan, ref, key, compile_spec)


def _init_input(plan: Plan, spec: Spec) -> dict:
    """model.init naming another study's checkpoint: {lineage key: (its node, "study:node")}."""
    if not isinstance(spec.model.init, StudyOutput):
        return {}
    source, study = _resolve(plan, spec.model.init, "model.init")
    return {"pretrain.model.init": (source, f"{study}:{source.name}")}


def _note_activation(plan: Plan, arch: str) -> None:
    """Weights from a file into a GELU config that has a QuickGELU twin: OpenAI's and CleanCLIP's
    weights are QuickGELU ones (the run refuses the ones whose activation it can tell)."""
    if f"{arch}-quickgelu" in known_archs():
        note = (f"model.arch: '{arch}' uses nn.GELU; OpenAI's and CleanCLIP's {arch} weights use "
                f"QuickGELU: name '{arch}-quickgelu' for them (docs/FIDELITY.md)")
        if note not in plan.notes:
            plan.notes.append(note)


def _pretrain_config(plan: Plan, spec: Spec) -> dict:
    model: dict = {"arch": spec.model.arch, "init": spec.model.init}
    if isinstance(spec.model.init, StudyOutput):
        model["init"] = {"input": _init_input(plan, spec)["pretrain.model.init"][0].kind}
    elif spec.model.init != "scratch":
        model["init"] = _fingerprint(plan, spec.model.init, "model.init")
        _note_activation(plan, spec.model.arch)
    if is_config_file(spec.model.arch):  # its content, not its path, decides what is trained
        model["arch_sha256"] = hashlib.sha256(Path(spec.model.arch).read_bytes()).hexdigest()
    return with_pretrain_defences({"model": model, **_training(spec.pretrain),
                                   "train": spec.data.train, **_shared(spec)}, spec.pretrain)


def _pretrain_key(plan: Plan, spec: Spec) -> str:
    config = typed(NODE_KINDS.get("pretrain").config_model(), _pretrain_config(plan, spec),
                   "pretrain node")
    return canonical_json(id_dump(config))


def _chain(plan: Plan, spec: Spec, keep_optimizer: set[str]) -> Chain:
    """`keep_optimizer`: pre-training configs (canonical JSON) whose checkpoints must carry the
    optimizer state, because a cleaning run continues with it (clean.optimizer = "pretrain")."""
    # The nodes an attack's `upstream` hook adds (BadCLIP's trigger) are inputs: their
    # settings are the attack's, which the poison config holds (with the node's id).
    upstream = plan.attack_deps.get(canonical_json(id_dump(spec.attack)), ())
    poison = _add(plan, "poison", {"attack": spec.attack, "train": spec.data.train,
                                   "seed": spec.study.seed, **_versions(spec, evaluates=False)},
                  (), {f"poison.{n.kind}": (n, None) for n in upstream})
    config = _pretrain_config(plan, spec)
    if keep_optimizer and _pretrain_key(plan, spec) in keep_optimizer:
        config["save_optimizer"] = True
    return Chain(spec, poison, _add(plan, "pretrain", config, (poison,),
                                     _init_input(plan, spec)))


def _started_chain(plan: Plan, spec: Spec) -> Chain:
    start, poison, pretrain = inputs.started_upstream(plan, spec, compile_spec)
    return Chain(spec, poison, pretrain, start)


def _keep_optimizer(plan: Plan, specs: list[Spec]) -> set[str]:
    return {_pretrain_key(plan, spec) for spec in specs
            if spec.clean is not None and spec.clean.optimizer == "pretrain"}


def _reference(chain: Chain, chains: list[Chain], selects: dict[str, Node]) -> Node:
    """The select node of the run whose accuracy `match_accuracy(<objective>)` matches."""
    mine = chain.pretrain.identity

    def same(other: Node, fields) -> bool:
        return all(other.identity[k] == mine[k] for k in fields)

    found = {c.pretrain.id: c for c in chains if c.matches is None and c.start is None
             and c.pretrain.deps == chain.pretrain.deps
             and c.pretrain.config.objective == chain.matches
             and same(c.pretrain, ("model", "train", "eval", "seed"))}
    if len(found) > 1:
        strict = ("lr", "epochs", "weight_decay", "warmup_steps")
        pretrain_defences = [d.name for d in defences_of("pretrain")]  # RoCLIP matches RoCLIP
        found = {i: c for i, c in found.items() if same(c.pretrain, strict)
                 and all(c.pretrain.identity.get(k) == mine.get(k) for k in pretrain_defences)}
    if len(found) != 1:
        raise CompileError(
            f"pretrain.select = '{chain.spec.pretrain.select}': {len(found)} pre-training runs "
            f"with objective '{chain.matches}' and the same data, model and attack; need one")
    return selects[next(iter(found))]


def _select(plan: Plan, chain: Chain, chains: list[Chain], selects: dict[str, Node]) -> Node:
    policy = parse_policy(chain.spec.pretrain.select).name
    version = POLICIES.get(policy).version
    versions = {"plugins": {f"policy:{policy}": version}} if version else {}
    if chain.matches is None:
        return _add(plan, "select", {"policy": chain.spec.pretrain.select, **versions},
                    (chain.pretrain,))
    reference = _reference(chain, chains, selects)
    return _add(plan, "select", {"policy": policy, "reference": chain.matches, **versions},
                (chain.pretrain, reference))


def _start(plan: Plan, spec: Spec, select: Node) -> Node:
    """The node cleaning starts from: the selected checkpoint, passed through the `start` hook of
    every defence that is on (shrink-and-perturb's node, say). Each such node writes
    `selected.json` as a select node does."""
    start = select
    for defence in defences_of("clean"):
        value = getattr(spec.clean, defence.name)
        if defence.start is not None and defence.active(value):
            start = resolve_ref(defence.start)(Builder(plan), spec, value, start)
    return start


def _clean(plan: Plan, chain: Chain, start: Node) -> Node:
    spec, clean = chain.spec, chain.spec.clean
    source = spec.data.clean.source
    data = {"from": chain.pretrain.config.train if source == "train" else source,
            "size": spec.data.clean.size, "overlap": spec.data.clean.overlap}
    config = {**_training(clean), "data": data, **_shared(spec),
              **_versions(spec, defences=True), "poisons": clean.poisons,
              "optimizer": clean.optimizer, "poison_source": clean.poison_source}
    for defence in defences_of("clean"):
        value = getattr(clean, defence.name)
        if defence.behaviour is None or not defence.active(value):
            continue
        dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        config[defence.name] = (defence.config(dumped, Builder(plan).fingerprint)
                                if defence.config else dumped)
    labels, inputs = clean.deep_cluster.labels if clean.deep_cluster else "kmeans", {}
    if isinstance(labels, StudyOutput):
        labeller = _pseudo_labels(plan, spec, chain, data, labels)
        config["deep_cluster"]["labels"] = {"input": "pseudo_labels"}
        inputs["clean.deep_cluster.labels"] = (labeller, labeller.lineage["pseudo_labels.model"])
    return _add(plan, "clean", config, (start, chain.poison), inputs, pool_copies(source))


def _pseudo_labels(plan: Plan, spec: Spec, chain: Chain, data: dict, ref) -> Node:
    """Labels for the cleaning pool from a stronger model of another study: its zero-shot
    predictions over the evaluation classes."""
    source, study = _resolve(plan, ref, "clean.deep_cluster.labels")
    config = {"data": data, "classes": spec.data.eval, "templates": spec.data.templates, "seed": spec.study.seed,
              "input": source.kind}
    return _add(plan, "pseudo_labels", config, (chain.poison,),
                {"pseudo_labels.model": (source, f"{study}:{source.name}")},
                pool_copies(spec.data.clean.source))


def _name_nodes(plan: Plan) -> None:
    """Names for this study's nodes; those of other studies keep the names they have there."""
    for kind in kind_order():
        nodes = [n for n in plan.own() if n.kind == kind]
        keys = sorted({k for n in nodes for k in n.lineage})
        plan.varying[kind] = [k for k in keys if len({repr(n.lineage.get(k)) for n in nodes}) > 1]
        plan.facts[kind] = facts(kind, nodes)
        for node in nodes:
            plan.nodes[node.id] = dataclasses.replace(
                node, name=node_name(kind, node, plan.facts[kind]))


def _warn_if_large(plan: Plan, loaded: LoadedSpec) -> None:
    """A note naming the axes that multiply into a plan of more than LARGE_PLAN nodes."""
    if len(plan.nodes) <= LARGE_PLAN:
        return
    leaders = sorted((a for a in loaded.axes if a.leader is None), key=lambda a: -len(a.values))
    axes = " × ".join(f"{a.name} ({len(a.values)} values)" for a in leaders) or "[[variants]]"
    plan.notes.insert(0, f"large plan: {len(plan.nodes):,} nodes (more than {LARGE_PLAN:,}) "
                         f"from {len(loaded.variants):,} variants: {axes}; each node is a run "
                         "folder with checkpoints: narrow an axis or split the study")


def compile_spec(loaded: LoadedSpec, parents: tuple[str, ...] = ()) -> Plan:
    plan = Plan(study=loaded.study, spec_path=str(loaded.path), parents=parents)
    if len({spec.study.name for spec, _ in loaded.variants}) > 1:
        raise CompileError("study.name cannot be a sweep axis")
    specs = [_attack_inputs(plan, spec) for spec, _ in loaded.variants]
    keep_optimizer = _keep_optimizer(plan, [s for s in specs if s.pretrain is not None])
    chains = [_chain(plan, spec, keep_optimizer) if spec.pretrain is not None
              else _started_chain(plan, spec) for spec in specs]
    selects: dict[str, Node] = {}
    for chain in sorted(chains, key=lambda c: c.matches is not None):
        if chain.start is None:
            selects[chain.pretrain.id] = _select(plan, chain, chains, selects)
    for chain in chains:
        if chain.spec.detect is not None and chain.start is None:
            detect_node(Builder(plan), chain.spec, chain, selects[chain.pretrain.id])
        cleaned = None
        if chain.spec.clean is not None:
            start = _start(plan, chain.spec, chain.start or selects[chain.pretrain.id])
            cleaned = _clean(plan, chain, start)
        decree_nodes(Builder(plan), chain.spec,
                     selects[chain.pretrain.id] if chain.start is None else None, cleaned)
    _name_nodes(plan)
    _warn_if_large(plan, loaded)
    for spec in specs:
        plan.notes += [n for n in target_notes(spec) if n not in plan.notes]
        for source in (spec.data.train, spec.data.clean.source):
            if getattr(source, "expected_size", None):
                plan.expected_sizes[source.path] = source.expected_size
    for axis in loaded.axes:
        if axis.dropped:
            plan.notes.append(
                f"{axis.name}: dropped repeated value(s) {', '.join(map(str, axis.dropped))}; "
                f"{len(axis.values)} distinct of {len(axis.written)} written"
            )
    return plan
