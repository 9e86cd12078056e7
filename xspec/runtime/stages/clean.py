"""The clean node: the cleaning set (drawn from the pool, poisons left in or added), held-out
pairs, and training with the defences that are on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xspec.compiler.configs import CleanDataConfig
from xspec.errors import DataError
from xspec.runtime.columns import Edited
from xspec.runtime.data import open_pairs
from xspec.runtime.defences import defences
from xspec.runtime.evaluator import Evaluator, HeldOutLoss
from xspec.runtime.fit import fit, training_data
from xspec.runtime.handoffs import (
    node_config, open_model, read_manifest, start_point, upstream_attack,
)
from xspec.runtime.node import Context
from xspec.runtime.pipeline import TrainingData
from xspec.runtime.seeding import generator, set_seed


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
    model, tokenizer, normalize, size = open_model(selected["arch"], {"path": selected["checkpoint"]},
                                               ctx)
    pairs = open_pairs(cfg.data.source, size, ctx.settings.on_bad_image)
    same_pool = cfg.data.source == node_config(ctx.dep("poison")).train
    manifest = read_manifest(ctx.dep("poison"), pairs if same_pool else None)
    indices = cleaning_indices(cfg.data, manifest if same_pool else {"poisoned": []},
                               len(pairs.captions), cfg.seed)
    captions, poisoned = Edited(pairs.captions), np.zeros(len(pairs.captions), dtype=bool)
    attack = upstream_attack(ctx)
    if cfg.poisons:
        indices = _poison_cleaning_set(ctx, indices, captions, poisoned, attack, manifest,
                                       same_pool)
    data = training_data(ctx, model, pairs, indices, captions, poisoned, attack, tokenizer,
                          normalize)
    evaluator = Evaluator(cfg.eval.model_dump(), attack, tokenizer, normalize, size, ctx.device,
                          ctx.settings)
    evaluator.manifest = lambda: manifest
    spare = heldout_indices(len(pairs.captions), indices, manifest, cfg.seed)
    heldout = None
    if len(spare) >= 2:
        held = TrainingData(pairs, spare, pairs.captions, np.zeros(len(pairs.captions), bool),
                            attack, tokenizer, normalize, min(cfg.batch_size, len(spare)),
                            cfg.seed, {"image", "text"}, workers=ctx.settings.workers,
                            device=ctx.device)
        heldout = HeldOutLoss(held, ctx.device)
    return CleanInputs(model, data, evaluator, heldout)


def fresh_poisons(indices: np.ndarray, k: int, attack, captions, seed: int) -> np.ndarray:
    """k pairs of the cleaning set to poison afresh, as the original code's cleaning sets with
    5 or 10 poisons were made (backdoor/create_backdoor_data.py run on the clean set); a
    label-consistent attack picks among pairs whose caption names its target."""
    names = getattr(attack, "names", None)  # a label-consistent attack's caption test
    pool = indices if names is None else np.array(
        [i for i in indices.tolist() if names(captions[i])], dtype=np.int64)
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
    return ctx.settings.keep_checkpoints == "all"


def clean(ctx: Context) -> None:
    inputs = clean_inputs(ctx)
    fit(ctx, inputs.model, inputs.data, inputs.evaluator, keep_all=keep_all_checkpoints(ctx),
        evaluate_start=True, ablations=defences(ctx), heldout=inputs.heldout)
