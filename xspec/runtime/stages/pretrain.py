"""The pretrain node: training on the poisoned pairs, every epoch's weights kept."""

from __future__ import annotations

import numpy as np

from xspec.runtime import models
from xspec.runtime.columns import Edited
from xspec.runtime.data import open_pairs
from xspec.runtime.defences import defences
from xspec.runtime.evaluator import Evaluator
from xspec.runtime.fit import fit, training_data
from xspec.runtime.handoffs import open_model, read_manifest, upstream_attack
from xspec.runtime.node import Context
from xspec.runtime.retrain import training_indices
from xspec.runtime.seeding import set_seed


def pretrain(ctx: Context) -> None:
    cfg = ctx.cfg  # PretrainConfig
    set_seed(cfg.seed)
    models.resolve(cfg.model.arch, cfg.model.arch_sha256)
    model, tokenizer, normalize, size = open_model(cfg.model.arch, cfg.model.init, ctx)
    pairs = open_pairs(cfg.train, size, ctx.settings.on_bad_image)
    manifest = read_manifest(ctx.dep("poison"), pairs)
    captions, poisoned = Edited(pairs.captions), np.zeros(len(pairs.captions), dtype=bool)
    for entry in manifest["poisoned"]:
        captions[entry["index"]] = entry["caption"]
        poisoned[entry["index"]] = True
    attack = upstream_attack(ctx)
    data = training_data(ctx, model, pairs, training_indices(ctx, poisoned), captions, poisoned,
                          attack, tokenizer, normalize)
    evaluator = Evaluator(cfg.eval.model_dump(), attack, tokenizer, normalize, size, ctx.device,
                          ctx.settings)
    evaluator.manifest = lambda: manifest
    fit(ctx, model, data, evaluator, keep_all=True, evaluate_start=False,
        ablations=defences(ctx))
