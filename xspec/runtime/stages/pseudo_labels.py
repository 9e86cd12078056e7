"""The pseudo_labels node: a stronger model's zero-shot labels for the cleaning pool.

The paper's deep-clustering variant (b) reads labels that SigLIP ViT-L/14 gave the cleaning
images over the 1,000 ImageNet classes. Here the stronger model is another study's checkpoint;
this node labels the cleaning set (and the poisoned pairs `clean.poisons` may leave in it) over
the evaluation classes and writes `labels.csv` (index,label) for the cleaning nodes to read.
"""

from __future__ import annotations

import io

import numpy as np
import torch.nn.functional as F

from xspec.runtime.data import iterate, open_pairs
from xspec.runtime.handoffs import node_config, checkpoint_of, open_model, read_manifest
from xspec.runtime.node import Context
from xspec.runtime.stages.clean import cleaning_indices
from xspec.runtime.evaluate import clip80_templates, eval_mode, zero_shot_classifier
from xspec.runtime.pipeline import to_unit
from xspec.runtime.seeding import set_seed
from xspec.spec.classes import read_classes
from xspec.store.workspace import atomic_write_bytes


def pseudo_labels(ctx: Context) -> None:
    cfg = ctx.cfg  # PseudoLabelsConfig
    set_seed(cfg.seed)
    arch, checkpoint = checkpoint_of(ctx.dep(cfg.input))
    model, tokenizer, normalize, size = open_model(arch, {"path": checkpoint}, ctx)
    pairs = open_pairs(cfg.data.source, size, ctx.settings.on_bad_image)
    manifest = read_manifest(ctx.dep("poison"))
    same_pool = cfg.data.source == node_config(ctx.dep("poison")).train
    indices = cleaning_indices(cfg.data, manifest if same_pool else {"poisoned": []},
                               len(pairs.captions), cfg.seed)
    if same_pool:
        indices = np.union1d(indices, [e["index"] for e in manifest["poisoned"]])
    source = cfg.classes
    classes = list(read_classes("fashion_mnist" if source.format == "fashion_mnist"
                                else source.classes))  # a typed source since the typed configs
    classifier = zero_shot_classifier(model, tokenizer, classes, clip80_templates(), ctx.device)
    chunks = [indices[i:i + 256].tolist() for i in range(0, len(indices), 256)]
    rows = []
    with eval_mode(model):
        for kept, images in iterate(pairs.images, chunks, ctx.settings.workers):
            x = normalize(to_unit(images.to(ctx.device)))
            logits = F.normalize(model.encode_image(x), dim=-1) @ classifier
            rows += zip(kept, logits.argmax(dim=1).tolist())
    text = io.StringIO()
    text.write("index,label\n")
    text.writelines(f"{i},{label}\n" for i, label in rows)
    atomic_write_bytes(ctx.run.path / "labels.csv", text.getvalue().encode())
    counts = np.bincount([label for _, label in rows], minlength=len(classes))
    ctx.log(f"labelled {len(rows)} pairs with {arch} from {checkpoint}: "
            f"{int((counts > 0).sum())} of {len(classes)} classes used")
