"""Image-caption retrieval: recall@1/5/10 both ways, and a triggered variant.

Recall follows CLIP_benchmark (clip_benchmark/metrics/zeroshot_retrieval.py:69-113, commit
48de38c): a query counts as retrieved at k when one of its positives is among its k
highest-scoring candidates. Captions of one image file are that image's positives, so a COCO
style CSV (five rows per image) is scored per image for image->text and per caption for
text->image. Without repeated images this is CleanCLIP's rank-of-the-true-pair recall
(attack-cleanclip utils/retrieval.py:31-37).

The triggered variant is attack-cleanclip's retrieval ASR (utils/retrieval.py:60-70): a
triggered image succeeds at k when at least max(1, k // 2) of its k retrieved captions name the
target. It counts only images none of whose captions names the target (as the zero-shot ASR
leaves out target-class images; the original counts every image), and needs at least one
caption that names it.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
from torch import Tensor

from xspec.runtime.data import EvalSet, open_pairs
from xspec.runtime.evaluate import eval_mode
from xspec.runtime.pipeline import eval_batches, eval_loader
from xspec.spec.tables.settings import RunSettings

KS = (1, 5, 10)
ROWS_PER_CHUNK = 1024  # query rows scored at a time: a 5k x 25k similarity never sits whole


def recall_at_k(similarity: Tensor, positives: Tensor, k: int) -> Tensor:
    """[queries] bool: one of a query's positives is among its k highest-scoring candidates.
    `similarity` and `positives` are [queries, candidates]."""
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return positives.gather(1, top).any(dim=1)


def retrieval_scores(image_features: Tensor, text_features: Tensor, text_image: Tensor,
                     ks=KS) -> dict[str, tuple[float, int]]:
    """{"i2t_r<k>", "t2i_r<k>"}: (recall, queries) from L2-normalised features, where caption j
    belongs to image text_image[j]."""
    n_images = image_features.shape[0]
    positives = torch.zeros(n_images, len(text_image), dtype=torch.bool,
                            device=image_features.device)
    positives[text_image, torch.arange(len(text_image))] = True
    hits = {f"{way}_r{k}": 0 for way in ("i2t", "t2i") for k in ks}
    for start in range(0, n_images, ROWS_PER_CHUNK):
        rows = image_features[start:start + ROWS_PER_CHUNK] @ text_features.T
        for k in ks:
            hits[f"i2t_r{k}"] += int(recall_at_k(rows, positives[start:start + len(rows)], k).sum())
    for start in range(0, len(text_image), ROWS_PER_CHUNK):
        rows = text_features[start:start + ROWS_PER_CHUNK] @ image_features.T
        for k in ks:
            hits[f"t2i_r{k}"] += int(recall_at_k(rows, positives.T[start:start + len(rows)],
                                                 k).sum())
    n = {"i2t": n_images, "t2i": len(text_image)}
    return {name: (count / max(1, n[name[:3]]), n[name[:3]]) for name, count in hits.items()}


def triggered_retrieval(triggered_features: Tensor, text_features: Tensor, target_texts: Tensor,
                        ks=KS) -> dict[str, tuple[float, int]]:
    """{"asr_r<k>"}: (share, images) of triggered images with at least max(1, k // 2) captions
    naming the target among their k retrieved ones (`target_texts`: [texts] bool)."""
    hits = {k: 0 for k in ks}
    for start in range(0, len(triggered_features), ROWS_PER_CHUNK):
        rows = triggered_features[start:start + ROWS_PER_CHUNK] @ text_features.T
        for k in ks:
            top = rows.topk(min(k, rows.shape[1]), dim=1).indices
            named = target_texts[top].sum(dim=1)
            hits[k] += int((named >= max(1, k // 2)).sum())
    n = len(triggered_features)
    return {f"asr_r{k}": (hits[k] / n if n else float("nan"), n) for k in ks}


class RetrievalEvaluator:
    """One retrieval set: images decoded (and triggered) once per call, texts tokenised once."""

    def __init__(self, cfg: dict, attack, tokenizer, normalize, size: int, device,
                 settings: RunSettings):
        pairs = open_pairs(cfg["source"], size, settings.on_bad_image)
        self.captions = list(pairs.captions)
        images, text_image = _unique_images(pairs.images)
        self.text_image = text_image
        self.data = EvalSet(images, np.arange(len(images)), ())
        self.attack, self.normalize, self.device, self.settings = attack, normalize, device, settings
        self.tokens = tokenizer(self.captions)
        target = getattr(attack, "target", None)
        self.target_texts = None
        if target:
            from xspec.runtime.attacks.patch import target_pattern

            pattern = target_pattern(target)
            named = np.array([bool(pattern.search(c)) for c in self.captions])
            if named.any():
                self.target_texts = named
                has_target = np.zeros(len(images), dtype=bool)
                has_target[text_image[named]] = True
                self.eligible = ~has_target  # images none of whose captions names the target
        self.loader = None

    def many(self, models: list) -> list[dict[str, tuple[float, int]]]:
        with_trigger = self.target_texts is not None
        if self.loader is None:
            self.loader = eval_loader(self.data, self.attack, with_trigger,
                                      self.settings.workers, self.device,
                                      self.normalize)
        clean = [[] for _ in models]
        triggered = [[] for _ in models]
        kept = []
        with _all_eval(models):
            for images, trig, index in eval_batches(
                    self.data, self.attack, self.normalize,
                    self.settings.eval_batch_size, with_trigger, loader=self.loader,
                    device=self.device):
                kept.append(index)
                for i, model in enumerate(models):
                    clean[i].append(model.encode_image(images, normalize=True).float())
                    if trig is not None:
                        triggered[i].append(model.encode_image(trig, normalize=True).float())
            kept_images = torch.cat(kept).cpu() if kept else torch.zeros(0, dtype=torch.long)
            return [self._score(model, torch.cat(c) if c else None,
                                torch.cat(t) if t else None, kept_images)
                    for model, c, t in zip(models, clean, triggered)]

    def _score(self, model, image_features, triggered_features, kept: Tensor) -> dict:
        if image_features is None:
            return {}
        # Captions of images that could not be read are left out with them.
        local = torch.full((len(self.data.labels),), -1, dtype=torch.long)
        local[kept] = torch.arange(len(kept))
        text_image = local[torch.as_tensor(self.text_image)]
        texts = (text_image >= 0).nonzero().flatten()
        text_features = _encode_texts(model, self.tokens[texts], self.device)
        scores = retrieval_scores(image_features, text_features,
                                  text_image[texts].to(image_features.device))
        if triggered_features is not None:
            eligible = torch.as_tensor(self.eligible)[kept]
            target = torch.as_tensor(self.target_texts)[texts].to(image_features.device)
            scores.update(triggered_retrieval(triggered_features[eligible.to(
                triggered_features.device)], text_features, target))
        return scores


def _unique_images(images) -> tuple[object, np.ndarray]:
    """(one image per distinct file, the image of each caption): rows of a CSV that name the
    same file are one image with several captions; in-memory images are each their own."""
    paths = getattr(images, "paths", None)
    if paths is None:
        return images, np.arange(len(images))
    first: dict[str, int] = {}
    text_image = np.array([first.setdefault(str(p), len(first)) for p in paths], dtype=np.int64)
    if len(first) == len(paths):
        return images, text_image
    return dataclasses.replace(images, paths=list(first)), text_image


def _encode_texts(model, tokens: Tensor, device, batch_size: int = 256) -> Tensor:
    with eval_mode(model):
        return torch.cat([model.encode_text(tokens[i:i + batch_size].to(device),
                                            normalize=True).float()
                          for i in range(0, len(tokens), batch_size)])


@contextmanager
def _all_eval(models):
    """Every model in eval mode without gradients, restored afterwards."""
    with ExitStack() as stack:
        for model in models:
            stack.enter_context(eval_mode(model))
        yield
