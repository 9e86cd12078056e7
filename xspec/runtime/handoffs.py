"""What nodes hand each other, read in one place: the poison manifest, the checkpoint a node
hands on (`selected.json`, else its last epoch), and the model built from it."""

from __future__ import annotations

import json

from xspec.errors import DataError
from xspec.extend.registry import NODE_KINDS
from xspec.runtime import models
from xspec.runtime.attacks import make_attack
from xspec.runtime.data import PairSet
from xspec.runtime.node import Context
from xspec.runtime.pipeline import Normalizer
from xspec.runtime.speed import apply_run_options
from xspec.store.workspace import RunDir


def node_config(run: RunDir):
    """The typed config of the node of a run folder (its node.json, as its kind's model)."""
    record = run.read_node()
    model = NODE_KINDS.get(record["kind"]).config_model()
    return record["config"] if model is None else model.model_validate(record["config"])


def poison_run(ctx: Context) -> RunDir:
    """The run folder of the poison node upstream of this one (its own dependency, or its
    dependencies' upstream: a shrink_perturb node's is its pre-training's)."""
    kinds = ctx.node.get("dep_kinds") or [None] * len(ctx.node["dep_runs"])
    queue = [(RunDir(ctx.workspace.runs / name), kind)
             for name, kind in zip(ctx.node["dep_runs"], kinds)]
    seen = set()
    while queue:
        run, kind = queue.pop(0)
        if run.path in seen:
            continue
        seen.add(run.path)
        record = run.read_node()
        if (kind or record["kind"]) == "poison":
            return run
        queue += [(RunDir(ctx.workspace.runs / name), None) for name in record["dep_runs"]]
    raise DataError(f"node {ctx.node['name']}: no poison node upstream to read the attack from")


def upstream_attack(ctx: Context):
    """The attack the model was poisoned with: the poison node's config is where it lives."""
    cfg = node_config(poison_run(ctx))
    return make_attack(cfg.attack, cfg.seed)


def read_manifest(run: RunDir, pairs: PairSet | None = None) -> dict:
    """The poison manifest; with the pairs it poisons, checked to name the same samples (a
    shard set that changed since poisoning would otherwise poison other pairs silently)."""
    manifest = json.loads((run.path / "manifest.json").read_text())
    if pairs is not None and pairs.keys is not None:
        for entry in manifest["poisoned"]:
            index, key = entry["index"], entry.get("key")
            found = pairs.keys[index] if index < len(pairs.keys) else None
            if key != found:
                raise DataError(f"poison manifest {run.path}: pair {index} was sample {key!r} "
                                f"but the data now has {found!r} there; the shards changed "
                                "since poisoning")
    return manifest


def checkpoint_of(run: RunDir) -> tuple[str, str]:
    """(arch, checkpoint path) a node hands on: its selected.json, else its last epoch."""
    if (run.path / "selected.json").exists():
        chosen = run.read_selected()
        return chosen["arch"], chosen["checkpoint"]
    node, latest = run.read_node(), run.latest_checkpoint()
    if latest is None:
        raise DataError(f"{run.path}: no checkpoint to hand on")
    arch = node["config"].get("model", {}).get("arch") or node["lineage"]["pretrain.model.arch"]
    return arch, str(latest[1])


def open_model(arch: str, init, ctx: Context):
    """(model, tokenizer, image normaliser, image size) for an architecture and its weights;
    `init` = {"input": kind} is the checkpoint of that dependency (another study's node)."""
    if isinstance(init, dict) and "input" in init:
        init = {"path": checkpoint_of(ctx.dep(init["input"]))[1]}
    model = apply_run_options(models.create(arch, init, ctx.device, ctx.log), ctx.settings,
                              ctx.log)
    mean, std, size = models.image_stats(model)
    return model, models.tokenizer(arch), Normalizer.of(mean, std), size


def start_point(ctx: Context) -> dict:
    """What the node cleaning starts from hands on: its first dependency's selected.json (a
    select node, or the last start node a defence put after it, e.g. shrink_perturb), else the
    last checkpoint of that node (clean.start naming another study's pretrain or clean node)."""
    run = ctx.first_dep()
    if (run.path / "selected.json").exists():
        return run.read_selected()
    arch, checkpoint = checkpoint_of(run)
    return {"arch": arch, "checkpoint": checkpoint}
