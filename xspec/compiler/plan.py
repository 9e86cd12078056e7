"""Compiling a loaded spec into a plan: a DAG of content-addressed nodes.

poison ──▶ pretrain ──▶ select ──▶ clean
   └───────────────────────────────▲   (the clean node reads the poison manifest to stay disjoint)

Pure: no torch, no I/O beyond stat-ing the files a spec names.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from xspec.compiler.hashing import node_id
from xspec.errors import CompileError
from xspec.spec.load import LoadedSpec
from xspec.spec.schema import Spec

KINDS = ("poison", "pretrain", "select", "clean")
TRAINING_FIELDS = ("objective", "mmcl_weight", "ssl_weight", "batch_size", "epochs", "lr",
                   "weight_decay", "warmup_steps")


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    config: dict
    deps: tuple[str, ...]
    lineage: dict
    name: str = ""
    dep_runs: tuple[str, ...] = ()

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
    notes: list[str] = field(default_factory=list)

    def ordered(self) -> list[Node]:
        return sorted(self.nodes.values(), key=lambda n: KINDS.index(n.kind))

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.ordered() if n.kind == kind]


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value
    return out


def _add(plan: Plan, kind: str, config: dict, deps: tuple[Node, ...]) -> Node:
    nid = node_id(kind, config, tuple(d.id for d in deps))
    if nid not in plan.nodes:
        lineage: dict = {}
        for dep in deps:
            lineage.update(dep.lineage)
        _flatten(kind, config, lineage)
        plan.nodes[nid] = Node(nid, kind, config, tuple(d.id for d in deps), lineage,
                               dep_runs=tuple(d.run_name for d in deps))
    return plan.nodes[nid]


def _fingerprint(path: str, key: str) -> dict:
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise CompileError(f"{key}: {path}: {exc.strerror}") from None
    return {"path": path, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _eval_config(spec: Spec) -> dict:
    return {"source": spec.data.eval.model_dump(mode="json"), "templates": spec.data.templates,
            "metrics": list(spec.evaluate.metrics)}


def _variant_nodes(plan: Plan, spec: Spec) -> None:
    seed, attack = spec.study.seed, spec.attack.model_dump(mode="json")
    train = spec.data.train.model_dump(mode="json")
    poison = _add(plan, "poison", {**attack, "train": train, "seed": seed}, ())
    model = spec.model.model_dump(mode="json")
    if spec.model.init != "scratch":
        model["init"] = _fingerprint(spec.model.init, "model.init")
    shared = {"attack": attack, "eval": _eval_config(spec), "seed": seed}
    pre = spec.pretrain
    pretrain = _add(plan, "pretrain", {
        "model": model, **{f: getattr(pre, f) for f in TRAINING_FIELDS}, "train": train, **shared
    }, (poison,))
    select = _add(plan, "select", {"policy": pre.select}, (pretrain,))
    if spec.clean is None:
        return
    data = spec.data.clean.model_dump(mode="json", by_alias=True)
    if data["from"] == "train":
        data["from"] = train
    _add(plan, "clean", {
        **{f: getattr(spec.clean, f) for f in TRAINING_FIELDS}, "data": data, **shared
    }, (select, poison))


def _name_nodes(plan: Plan) -> None:
    for kind in KINDS:
        nodes = plan.of_kind(kind)
        keys = sorted({k for n in nodes for k in n.lineage})
        varying = [k for k in keys if len({repr(n.lineage.get(k)) for n in nodes}) > 1]
        plan.varying[kind] = varying
        for node in nodes:
            parts = [f"{k.removeprefix(kind + '.')}={node.lineage.get(k)}" for k in varying]
            name = f"{kind}@{','.join(parts)}" if parts else kind
            plan.nodes[node.id] = dataclasses.replace(node, name=name)


def compile_spec(loaded: LoadedSpec) -> Plan:
    plan = Plan(study=loaded.study, spec_path=str(loaded.path))
    for spec, _ in loaded.variants:
        if spec.study.name != plan.study:
            raise CompileError("study.name cannot be a sweep axis")
        _variant_nodes(plan, spec)
    _name_nodes(plan)
    for axis in loaded.axes:
        if axis.dropped:
            plan.notes.append(
                f"{axis.name}: dropped repeated value(s) {', '.join(map(str, axis.dropped))}; "
                f"{len(axis.values)} distinct of {len(axis.written)} written"
            )
    return plan
