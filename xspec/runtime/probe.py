"""Linear probes, as CleanCLIP reports them (attack-cleanclip src/evaluate.py:166-279).

Logistic regression (one linear layer, cross-entropy) on the frozen image features of a
labelled train split, scored on the evaluation set's images: AdamW with weight decay on the
weight only (:231), the learning rate on CleanCLIP's cosine schedule without warm-up over every
step (:232, src/scheduler.py:3-14), shuffled batches (:215). Features are the model's image
embeddings before normalisation (`get_image_features`, :179). The probe's initialisation and
batch order come from the study's seed (the original's are unseeded).

A probe's accuracy depends only on the model's weights and the probe's data and settings, so it
is cached per model: in $XDG_CACHE_HOME/xspec/probe (default ~/.cache), keyed by a hash of
both; the starting model that every cleaning run of a grid evaluates at epoch 0 is probed once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from xspec.errors import DataError
from xspec.runtime.data import EvalSet, open_eval
from xspec.runtime.evaluate import eval_mode
from xspec.runtime.subsets import restrict
from xspec.runtime.pipeline import eval_batches
from xspec.runtime.seeding import derive_seed
from xspec.store.workspace import atomic_write_json
from xspec.spec.tables.settings import RunSettings


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """CleanCLIP's cosine_scheduler with no warm-up (src/scheduler.py:3-14)."""
    return 0.5 * (1 + math.cos(math.pi * step / total_steps)) * base_lr


def fit_probe(train_x: torch.Tensor, train_y: torch.Tensor, classes: int, cfg: dict,
              seed: int) -> torch.nn.Linear:
    """A linear classifier trained on features as the original trains its probe."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "probe-init"))
    head = torch.nn.Linear(train_x.shape[1], classes)
    with torch.no_grad():
        bound = 1 / math.sqrt(train_x.shape[1])
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    head = head.to(train_x.device)
    optimizer = torch.optim.AdamW([
        {"params": [head.bias], "weight_decay": 0.0},
        {"params": [head.weight], "weight_decay": cfg["weight_decay"]}])
    batch = cfg["batch_size"]
    per_epoch = math.ceil(len(train_x) / batch)
    total = per_epoch * cfg["epochs"]
    order = torch.Generator().manual_seed(derive_seed(seed, "probe-order"))
    for epoch in range(cfg["epochs"]):
        permutation = torch.randperm(len(train_x), generator=order).to(train_x.device)
        for index in range(per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(cfg["lr"], epoch * per_epoch + index, total)
            chosen = permutation[index * batch:(index + 1) * batch]
            loss = F.cross_entropy(head(train_x[chosen]), train_y[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


class LinearProbe:
    """One set's probe: its train split opened once, its accuracy per model cached."""

    def __init__(self, cfg: dict, test: EvalSet, set_cfg: dict, normalize, size: int, device,
                 settings: RunSettings, seed: int):
        self.cfg, self.test, self.normalize, self.device = cfg, test, normalize, device
        self.settings, self.seed = settings, seed
        full = open_eval(cfg["train"], size, settings.on_bad_image)
        self.train = restrict(full, set_cfg.get("subset"))
        if self.train.classes != test.classes:
            raise DataError(f"probe.train: its classes ({len(self.train.classes)}, e.g. "
                            f"{', '.join(self.train.classes[:3])}) are not the set's")
        self.key = json.dumps({"set": set_cfg, "seed": seed, "size": size}, sort_keys=True)

    def __call__(self, model) -> tuple[float, int]:
        path = _cache_dir() / f"{self._fingerprint(model)}.json"
        try:
            cached = json.loads(path.read_text())
            return cached["top1"], cached["n"]
        except (OSError, ValueError, KeyError):
            pass
        train_x, train_y = self._features(model, self.train)
        test_x, test_y = self._features(model, self.test)
        with torch.enable_grad():
            head = fit_probe(train_x, train_y, len(self.test.classes), self.cfg, self.seed)
        with torch.no_grad():
            correct = int((head(test_x).argmax(dim=1) == test_y).sum())
        result = (correct / len(test_y) if len(test_y) else math.nan, len(test_y))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"top1": result[0], "n": result[1]})
        except OSError:
            pass  # no cache: measured again next time
        return result

    def _features(self, model, data: EvalSet) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = [], []
        with eval_mode(model):
            for clean, _, y in eval_batches(data, None, self.normalize,
                                            self.settings.eval_batch_size, False,
                                            device=self.device):
                features.append(model.encode_image(clean).float())
                labels.append(y)
        return torch.cat(features), torch.cat(labels)

    def _fingerprint(self, model) -> str:
        digest = hashlib.sha256(self.key.encode())
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        return digest.hexdigest()


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "xspec" / "probe"
