"""One function per built-in node kind (registered in `xspec.compiler.kinds`). Each reads its
config and its dependencies' run folders and writes its own run folder; `xspec.runtime.node`
handles status and failures. A node cleaning can start from (select, shrink_perturb, a plugin's)
writes `selected.json`: the checkpoint, its architecture and how it was chosen."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from xspec.compiler.configs import CleanDataConfig
from xspec.errors import DataError
from xspec.runtime import models
from xspec.extend.registry import POLICIES, resolve
from xspec.runtime.ablations import perturbed
from xspec.runtime.attacks import make_attack
from xspec.runtime.columns import Edited
from xspec.runtime.data import PairSet, open_pairs, pair_keys_and_captions
from xspec.runtime.defences import defences
from xspec.runtime.node import Context
from xspec.runtime.fit import Evaluator, HeldOutLoss, fit, training_data
from xspec.runtime.pipeline import Normalizer, TrainingData
from xspec.runtime.records import MetricsLog, save_checkpoint
from xspec.runtime.seeding import generator, set_seed
from xspec.store.workspace import RunDir, atomic_write_json


def poison(ctx: Context) -> None:
    """The poison manifest: which pairs carry the trigger and their new captions."""
    cfg = ctx.cfg  # PoisonConfig
    keys, captions = pair_keys_and_captions(cfg.train)
    attack = make_attack(cfg.attack, cfg.seed)
    indices = attack.select(captions)
    atomic_write_json(ctx.run.path / "manifest.json", {
        "n_pairs": len(captions), "target": attack.target,
        "poisoned": [{"index": int(i), "caption": attack.poison_caption(int(i), captions[i]),
                      "original": captions[i], **({"key": keys[i]} if keys is not None else {})}
                     for i in indices],
    })
    ctx.log(f"poisoned {len(indices)} of {len(captions)} pairs")
    if attack.shortfall:
        ctx.log(f"warning: only {len(indices)} captions name the target {attack.target!r}; "
                f"{attack.shortfall} fewer poisons than attack.poisons asks for")


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
    selected = run.path / "selected.json"
    if selected.exists():
        chosen = json.loads(selected.read_text())
        return chosen["arch"], chosen["checkpoint"]
    node, latest = run.read_node(), run.latest_checkpoint()
    if latest is None:
        raise DataError(f"{run.path}: no checkpoint to hand on")
    arch = node["config"].get("model", {}).get("arch") or node["lineage"]["pretrain.model.arch"]
    return arch, str(latest[1])


def _model(arch: str, init, ctx: Context):
    """(model, tokenizer, image normaliser, image size) for an architecture and its weights;
    `init` = {"input": kind} is the checkpoint of that dependency (another study's node)."""
    if isinstance(init, dict) and "input" in init:
        init = {"path": checkpoint_of(ctx.dep(init["input"]))[1]}
    model = models.create(arch, init, ctx.device, ctx.log)
    mean, std, size = models.image_stats(model)
    return model, models.tokenizer(arch), Normalizer.of(mean, std), size


def pretrain(ctx: Context) -> None:
    cfg = ctx.cfg  # PretrainConfig
    set_seed(cfg.seed)
    models.resolve(cfg.model.arch, cfg.model.arch_sha256)
    model, tokenizer, normalize, size = _model(cfg.model.arch, cfg.model.init, ctx)
    pairs = open_pairs(cfg.train, size, ctx.settings.get("on_bad_image", "skip"))
    manifest = read_manifest(ctx.dep("poison"), pairs)
    captions, poisoned = Edited(pairs.captions), np.zeros(len(pairs.captions), dtype=bool)
    for entry in manifest["poisoned"]:
        captions[entry["index"]] = entry["caption"]
        poisoned[entry["index"]] = True
    attack = make_attack(cfg.attack, cfg.seed)
    data = training_data(ctx, model, pairs, np.arange(len(captions)), captions, poisoned,
                          attack, tokenizer, normalize)
    evaluator = Evaluator(cfg.eval.model_dump(), attack, tokenizer, normalize, size, ctx.device,
                          ctx.settings)
    fit(ctx, model, data, evaluator, keep_all=True, evaluate_start=False)


# Selection policies (registered in `xspec.spec.policies`): (top-1 per epoch, argument, ctx)
# -> the chosen epoch.
def best_accuracy_policy(top1: dict[int, float], arg, ctx: Context) -> int:
    return max(top1, key=lambda e: (top1[e], -e))


def final_policy(top1: dict[int, float], arg, ctx: Context) -> int:
    return max(top1)


def epoch_policy(top1: dict[int, float], arg: str, ctx: Context) -> int:
    return int(arg)


def match_accuracy_policy(top1: dict[int, float], arg, ctx: Context) -> int:
    """The epoch whose accuracy is closest to the reference run's selected accuracy."""
    reference = MetricsLog(ctx.dep("select").metrics_file, "").rows
    target = next(r["value"] for r in reference if (r["split"], r["metric"]) == ("eval", "top1"))
    return min(top1, key=lambda e: (abs(top1[e] - target), e))


def select(ctx: Context) -> None:
    """Pick the pre-trained checkpoint that cleaning starts from."""
    from xspec.spec.policies import parse_policy

    source = ctx.dep("pretrain")
    rows = MetricsLog(source.metrics_file, "").rows
    top1 = {r["epoch"]: r["value"] for r in rows if (r["split"], r["metric"]) == ("eval", "top1")}
    policy = ctx.cfg.policy
    name, arg = ((policy, ctx.cfg.reference) if ctx.cfg.reference is not None
                 else (parse_policy(policy).name, parse_policy(policy).arg))
    epoch = resolve(POLICIES.get(name).behaviour)(top1, arg, ctx)
    if epoch not in top1 or not source.checkpoint(epoch).exists():
        raise DataError(f"select: no checkpoint of epoch {epoch} in {source.path}")
    pre = source.read_node()["config"]
    optimizer = source.checkpoints / f"optimizer_{epoch}.pt"
    atomic_write_json(ctx.run.path / "selected.json", {
        "epoch": epoch, "checkpoint": str(source.checkpoint(epoch)),
        "arch": pre["model"]["arch"], "pretrain_node": source.read_node()["id"],
        "optimizer": str(optimizer) if optimizer.exists() else None})
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows = []
    for r in rows:
        if r["epoch"] == epoch and r["split"] == "eval":
            metrics.add(epoch, "eval", r["metric"], r["value"], r["n"], r["step"])
    metrics.flush()
    ctx.log(f"selected epoch {epoch} by {policy}: top1 {top1[epoch]:.3f}")


def cleaning_indices(cfg: CleanDataConfig, manifest: dict, n_pool: int,
                     seed: int) -> np.ndarray:
    excluded = [e["index"] for e in manifest["poisoned"]] if cfg.overlap == "disjoint" else []
    pool = np.setdiff1d(np.arange(n_pool, dtype=np.int64), np.array(excluded, dtype=np.int64))
    if cfg.size > len(pool):
        raise DataError(f"clean.size = {cfg.size} but only {len(pool)} eligible pairs "
                        f"({cfg.overlap} from the poisoned ones)")
    perm = torch.randperm(len(pool), generator=generator(seed, "clean-set")).numpy()
    return np.sort(pool[perm[: cfg.size]])


def heldout_indices(n_pool: int, used: np.ndarray, manifest: dict, seed: int,
                    size: int = 1000) -> np.ndarray:
    """Clean pairs of the pool that neither the cleaning set nor the poisons use."""
    excluded = np.union1d(used, np.array([e["index"] for e in manifest["poisoned"]], np.int64))
    pool = np.setdiff1d(np.arange(n_pool, dtype=np.int64), excluded)
    perm = torch.randperm(len(pool), generator=generator(seed, "heldout")).numpy()
    return np.sort(pool[perm[:size]])


def left_poisons(manifest: dict, k: int, seed: int) -> list[dict]:
    """The k poisoned pairs left inside the cleaning set (the paper's non-ideal conditions)."""
    if k > len(manifest["poisoned"]):
        raise DataError(f"clean.poisons = {k} but only {len(manifest['poisoned'])} pairs are "
                        "poisoned")
    perm = torch.randperm(len(manifest["poisoned"]), generator=generator(seed, "left-poisons"))
    return [manifest["poisoned"][i] for i in perm[:k].tolist()]


def start_point(ctx: Context) -> dict:
    """What the node cleaning starts from hands on: its first dependency's selected.json (a
    select node, or the last start node a defence put after it, e.g. shrink_perturb), else the
    last checkpoint of that node (clean.start naming another study's pretrain or clean node)."""
    run = ctx.first_dep()
    if (run.path / "selected.json").exists():
        return json.loads((run.path / "selected.json").read_text())
    arch, checkpoint = checkpoint_of(run)
    return {"arch": arch, "checkpoint": checkpoint}


@dataclass
class CleanInputs:
    """What a cleaning node trains and evaluates with; packed siblings share all but the model."""

    model: torch.nn.Module
    data: TrainingData
    evaluator: Evaluator
    heldout: HeldOutLoss | None


def clean_inputs(ctx: Context) -> CleanInputs:
    cfg = ctx.cfg  # CleanConfig
    set_seed(cfg.seed)
    selected = start_point(ctx)
    model, tokenizer, normalize, size = _model(selected["arch"], {"path": selected["checkpoint"]},
                                               ctx)
    pairs = open_pairs(cfg.data.source, size, ctx.settings.get("on_bad_image", "skip"))
    same_pool = cfg.data.source == ctx.dep("poison").read_node()["config"]["train"]
    manifest = read_manifest(ctx.dep("poison"), pairs if same_pool else None)
    indices = cleaning_indices(cfg.data, manifest if same_pool else {"poisoned": []},
                               len(pairs.captions), cfg.seed)
    captions, poisoned = Edited(pairs.captions), np.zeros(len(pairs.captions), dtype=bool)
    attack = make_attack(cfg.attack, cfg.seed)
    if cfg.poisons:
        indices = _poison_cleaning_set(ctx, indices, captions, poisoned, attack, manifest,
                                       same_pool)
    data = training_data(ctx, model, pairs, indices, captions, poisoned, attack, tokenizer,
                          normalize)
    evaluator = Evaluator(cfg.eval.model_dump(), attack, tokenizer, normalize, size, ctx.device,
                          ctx.settings)
    spare = heldout_indices(len(pairs.captions), indices, manifest, cfg.seed)
    heldout = None
    if len(spare) >= 2:
        held = TrainingData(pairs, spare, pairs.captions, np.zeros(len(pairs.captions), bool),
                            attack, tokenizer, normalize, min(cfg.batch_size, len(spare)),
                            cfg.seed, {"image", "text"}, workers=ctx.settings.get("workers", 0),
                            device=ctx.device)
        heldout = HeldOutLoss(held, ctx.device)
    return CleanInputs(model, data, evaluator, heldout)


def fresh_poisons(indices: np.ndarray, k: int, attack, captions, seed: int) -> np.ndarray:
    """k pairs of the cleaning set to poison afresh, as the original code's cleaning sets with
    5 or 10 poisons were made (backdoor/create_backdoor_data.py run on the clean set); a
    label-consistent attack picks among pairs whose caption names its target."""
    names_target = getattr(attack, "names_target", None)
    pool = indices if names_target is None else np.array(
        [i for i in indices.tolist() if names_target.search(captions[i])], dtype=np.int64)
    if k > len(pool):
        raise DataError(f"clean.poisons = {k} but the cleaning set has only {len(pool)} pairs "
                        "that can be poisoned")
    perm = torch.randperm(len(pool), generator=generator(seed, "clean-poisons")).numpy()
    return np.sort(pool[perm[:k]])


def _poison_cleaning_set(ctx: Context, indices: np.ndarray, captions, poisoned: np.ndarray,
                         attack, manifest: dict, same_pool: bool) -> np.ndarray:
    """Poisoned pairs inside the cleaning set (non-ideal conditions); updates captions and
    the poisoned mask in place and returns the cleaning set's indices."""
    cfg = ctx.cfg
    if cfg.poison_source == "fresh":
        chosen = fresh_poisons(indices, cfg.poisons, attack, captions, cfg.seed)
        for i in chosen.tolist():
            captions[i], poisoned[i] = attack.poison_caption(i, captions[i]), True
        ctx.log(f"{len(chosen)} pairs of the cleaning set of {len(indices)} poisoned afresh")
        return indices
    if not same_pool:
        raise DataError("clean.poison_source = 'pretrain' needs the cleaning set drawn from the "
                        "training pool")
    left = left_poisons(manifest, cfg.poisons, cfg.seed)
    for entry in left:
        captions[entry["index"]], poisoned[entry["index"]] = entry["caption"], True
    indices = np.union1d(indices, [e["index"] for e in left])
    ctx.log(f"{len(left)} poisoned pairs left in the cleaning set of {len(indices)}")
    return indices


def keep_all_checkpoints(ctx: Context) -> bool:
    return ctx.settings.get("keep_checkpoints") == "all"


def clean(ctx: Context) -> None:
    inputs = clean_inputs(ctx)
    fit(ctx, inputs.model, inputs.data, inputs.evaluator, keep_all=keep_all_checkpoints(ctx),
        evaluate_start=True, ablations=defences(ctx), heldout=inputs.heldout)


def shrink_perturb(ctx: Context) -> None:
    """Evaluate every (shrink, perturb) candidate; keep the most accurate one under the ASR bar."""
    cfg = ctx.cfg  # ShrinkPerturbConfig
    set_seed(cfg.seed)
    selected = json.loads((ctx.first_dep().path / "selected.json").read_text())
    model, tokenizer, normalize, size = _model(selected["arch"], {"path": selected["checkpoint"]},
                                               ctx)
    evaluator = Evaluator(cfg.eval.model_dump(), make_attack(cfg.attack, cfg.seed), tokenizer,
                          normalize, size, ctx.device, ctx.settings)
    start = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    parameters = {name for name, _ in model.named_parameters()}
    fresh = None
    if cfg.noise == "init":
        torch.manual_seed(cfg.seed)
        fresh = models.create(selected["arch"], "scratch", torch.device("cpu")).state_dict()
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows, candidates = [], []
    for shrink in cfg.shrink:
        for sigma in cfg.perturb:
            model.load_state_dict(perturbed(start, parameters, shrink, sigma, cfg.noise, fresh,
                                              cfg.seed))
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                ctx.log(f"shrink {shrink} perturb {sigma}: parameters overflowed; not a candidate")
                continue
            scores = evaluator(model)
            candidates.append({"shrink": shrink, "perturb": sigma,
                               **{k: v[0] for k, v in scores.items()}})
            for name, (value, n) in scores.items():
                metrics.add(0, "candidate", name, value, n, step=len(candidates) - 1)
            ctx.log(f"shrink {shrink} perturb {sigma}: " +
                    ", ".join(f"{k} {v[0]:.3f}" for k, v in scores.items()))
    if not candidates:
        raise DataError("shrink_perturb: every (shrink, perturb) candidate overflowed; "
                        "lower clean.shrink_perturb.perturb")
    eligible = [c for c in candidates if c.get("asr", 0.0) <= cfg.asr_threshold]
    best = max(eligible or candidates, key=lambda c: (c["top1"], -c.get("asr", 0.0)))
    chosen = candidates.index(best)
    model.load_state_dict(perturbed(start, parameters, best["shrink"], best["perturb"],
                                    cfg.noise, fresh, cfg.seed))
    save_checkpoint(ctx.run.checkpoint(0), {"model": model.state_dict(), "epoch": 0,
                                            "node_id": ctx.node["id"],
                                            "activation": models.activation(model)})
    for row in [r for r in metrics.rows if r["step"] == chosen]:
        metrics.add(0, "eval", row["metric"], row["value"], row["n"], 0)
    metrics.flush()
    atomic_write_json(ctx.run.path / "selected.json", {
        **selected, "checkpoint": str(ctx.run.checkpoint(0)), "candidate": best,
        "under_threshold": bool(eligible)})
    ctx.log(f"chose shrink {best['shrink']} perturb {best['perturb']}"
            + ("" if eligible else " (no candidate reached the ASR threshold)"))


