"""The detect node: every training pair scored by each detector `[detect]` turns on, the
scores written to the run folder (`scores.parquet`) and compared with the poison manifest.

Pairs are shuffled from the seed and scored in batches of `detect.batch_size`, as the original
scores its shuffled training loader (Detect-CLIP-Backdoor-Samples, extract_bd_scores.py:142);
features are the model's unnormalised image and caption embeddings, as its detectors read them
(`model.encode_image(images)`). Metrics land in `metrics.parquet` as split
`detect:<detector>`, metrics `auroc`, `auprc` and `tpr_at_1fpr`; higher scores mean "poisoned".
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from xspec.errors import DataError
from xspec.extend.registry import DETECTORS, resolve
from xspec.runtime.columns import Edited
from xspec.runtime.data import open_pairs
from xspec.runtime.handoffs import checkpoint_of, open_model, read_manifest, upstream_attack
from xspec.runtime.node import Context
from xspec.runtime.pipeline import TrainingData, to_device
from xspec.runtime.records import MetricsLog
from xspec.runtime.seeding import derive_seed, generator, set_seed
from xspec.store.workspace import atomic_write_bytes


@dataclass
class DetectBatch:
    """One batch of training pairs as a detector sees it."""

    image: torch.Tensor  # [B, D] image embeddings, unnormalised
    text: torch.Tensor  # [B, D] caption embeddings, unnormalised
    pixels: torch.Tensor  # [B, 3, H, W] the normalised images (poisoned ones triggered)
    model: torch.nn.Module
    seed: int  # derived for this batch: every random choice of a detector starts here
    index: torch.Tensor  # [B] pair indices


def pair_distances(data: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of each row of `data` to every row of `reference` but its own
    (row i of data is row i of reference), as the original's get_pair_wise_distance
    (backdoor_sample_detector/k_distance.py:6) without ranks."""
    b = data.shape[0]
    r = torch.cdist(data, reference, p=2, compute_mode="donot_use_mm_for_euclid_dist")
    mask = torch.zeros((b, reference.shape[0]), dtype=torch.bool, device=data.device)
    mask[torch.arange(b), torch.arange(b)] = True
    return r[~mask].view(b, -1)


def neighbours(batch: DetectBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted distances, their column order) of each image to the batch's other images and
    other captions: the original's image-text case (k_distance.py:43-47)."""
    image, text = batch.image.float(), batch.text.float()
    d = torch.cat([pair_distances(image, image), pair_distances(image, text)], dim=1)
    return torch.sort(d, dim=1)


def usable_k(k: int, distances: torch.Tensor) -> int:
    """k, or the largest k a small batch allows."""
    return max(1, min(k, distances.shape[1] - 1))


def lid_mle(a: torch.Tensor, k: int) -> torch.Tensor:
    """The MLE of local intrinsic dimensionality from sorted distances (lid_detection.py:50)."""
    return -k / torch.sum(torch.log(a[:, :k] / a[:, k].unsqueeze(-1) + 1.e-4), dim=1)


def reference_neighbours(batch: DetectBatch) -> torch.Tensor:
    """Sorted distances among all the batch's image and caption embeddings (slof.py:49-55)."""
    reference = torch.cat([batch.image.float(), batch.text.float()], dim=0)
    full = torch.cdist(reference, reference, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.sort(full, dim=1)[0]


def rank_metrics(scores: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC (area under precision-recall, as the original's process_detection_scores.py
    :181-184) and the TPR at 1 % FPR; higher scores mean poisoned."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    if poisoned.all() or not poisoned.any():
        raise DataError("detect: scoring needs both poisoned and clean pairs; the attack "
                        f"poisoned {int(poisoned.sum())} of {len(poisoned)}")
    fpr, tpr, _ = roc_curve(poisoned, scores, pos_label=1)
    precision, recall, _ = precision_recall_curve(poisoned, scores, pos_label=1)
    return {"auroc": float(auc(fpr, tpr)), "auprc": float(auc(recall, precision)),
            "tpr_at_1fpr": float(tpr[fpr <= 0.01].max())}


def chunks(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """All n pairs, shuffled from the seed, in batches; a remainder under half a batch joins the
    batch before it (a few pairs are no reference set for k-NN scores)."""
    order = torch.randperm(n, generator=generator(seed, "detect-order")).tolist()
    parts = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(parts) > 1 and len(parts[-1]) < batch_size / 2:
        last = parts.pop()
        parts[-1] = parts[-1] + last
    return parts


def _training_pairs(ctx: Context, size: int, tokenizer, normalize) -> TrainingData:
    """The pre-training set exactly as it was trained on: poisoned captions and triggers."""
    cfg = ctx.cfg
    pairs = open_pairs(cfg.train, size, ctx.settings.on_bad_image)
    manifest = read_manifest(ctx.dep("poison"), pairs)
    captions, poisoned = Edited(pairs.captions), np.zeros(len(pairs.captions), dtype=bool)
    for entry in manifest["poisoned"]:
        captions[entry["index"]], poisoned[entry["index"]] = entry["caption"], True
    return TrainingData(pairs, np.arange(len(captions)), captions, poisoned,
                        upstream_attack(ctx), tokenizer, normalize, cfg.batch_size,
                        cfg.seed, {"image", "text"}, workers=ctx.settings.workers,
                        device=ctx.device)


def score_all(ctx: Context, model, data: TrainingData, detectors: dict) -> dict[str, np.ndarray]:
    """{detector: score per pair} (NaN for unreadable images)."""
    n = len(data.captions)
    scores = {name: np.full(n, np.nan) for name in detectors}
    jobs = [(0, part) for part in chunks(n, ctx.cfg.batch_size, ctx.cfg.seed)]
    model.eval()
    for number, ((_, wanted), raw) in enumerate(data.loader.run(jobs)):
        data.skipped.update(set(wanted) - set(raw["index"].tolist()))
        batch = to_device(raw, ctx.device, data.normalize)
        with torch.no_grad():
            image = model.encode_image(batch["image"])
            text = model.encode_text(batch["text"])
        view = DetectBatch(image, text, batch["image"], model,
                           derive_seed(ctx.cfg.seed, "detect", number), batch["index"])
        for name, (spec, fn) in detectors.items():
            scores[name][batch["index"].numpy()] = torch.as_tensor(
                fn(spec, view)).detach().float().cpu().numpy()
    return scores


def write_scores(path, scores: dict[str, np.ndarray], poisoned: np.ndarray) -> None:
    table = pa.table({"index": np.arange(len(poisoned), dtype=np.int64),
                      "poisoned": poisoned, **{k: v for k, v in scores.items()}})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def detect(ctx: Context) -> None:
    cfg = ctx.cfg  # DetectConfig
    set_seed(cfg.seed)
    arch, checkpoint = checkpoint_of(ctx.dep("select"))  # selected.json, paths resolved
    model, tokenizer, normalize, size = open_model(arch, {"path": checkpoint}, ctx)
    for p in model.parameters():
        p.requires_grad_(False)
    data = _training_pairs(ctx, size, tokenizer, normalize)
    detectors = {name: (value, resolve(DETECTORS.get(name).behaviour))
                 for name, value in cfg.detectors.on().items()}
    scores = score_all(ctx, model, data, detectors)
    write_scores(ctx.run.path / "scores.parquet", scores, data.poisoned)
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows = []
    read = np.ones(len(data.poisoned), dtype=bool)
    read[list(data.skipped)] = False
    for name, values in scores.items():
        found = rank_metrics(values[read], data.poisoned[read])
        for metric, value in found.items():
            metrics.add(0, f"detect:{name}", metric, value, int(read.sum()), 0)
        ctx.log(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in found.items()))
    metrics.flush()
