"""The paper's cleaning ablations: deep clustering and shrink-and-perturb (L2 toward the start
is `xspec.builtin.l2_to_start`)."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch
import torch.nn.functional as F

from xspec.compiler.configs import DeepClusterConfig, FileRef, InputRef
from xspec.errors import DataError
from xspec.runtime.data import iterate
from xspec.textfiles import read_csv_rows
from xspec.runtime.pipeline import TrainingData, to_unit
from xspec.runtime.seeding import derive_seed, generator
from xspec.extend.registry import Pieces
from xspec.runtime.defences import replace_group
from xspec.runtime.train import ExtraTerm


def deep_cluster(value, setup) -> Pieces:
    """The `[clean] deep_cluster` defence (registered in `xspec.spec.tables.defences`). Labels
    from another study's model are the labels.csv its pseudo_labels node wrote."""
    cfg = value if isinstance(value, DeepClusterConfig) else DeepClusterConfig.model_validate(value)
    if isinstance(cfg.labels, InputRef):
        labels = setup.dep(cfg.labels.input).path / "labels.csv"
        cfg = cfg.model_copy(update={"labels": FileRef(path=str(labels))})
    cluster = DeepCluster(cfg, setup.model, setup.data, setup.optimizer, setup.device,
                          setup.seed, setup.log)
    return Pieces(terms=[cluster.term], on_epoch_start=cluster.on_epoch_start)


class DeepCluster:
    """Pseudo-labels for the cleaning set, a linear head on the image features, CE on the labels.

    k-means labels are recomputed every epoch: each image's cluster at the epoch start
    (`assign = "epoch"`), or the nearest epoch-start centroid of its current embedding at every
    step (`"online"`, the original's src/train.py:71). Labels from a file never change. The head
    (initialised N(0, 0.01), bias 0, as the original's) is re-initialised whenever labels are
    recomputed (`head_reset = "new_labels"`) or at every epoch (`"every_epoch"`)."""

    def __init__(self, cfg: DeepClusterConfig, model, data: TrainingData, optimizer, device, seed: int,
                 log=print):
        self.cfg, self.model, self.data, self.optimizer = cfg, model, data, optimizer
        self.device, self.seed, self.log = device, seed, log
        self.labels: dict[int, int] = {}
        self.centroids: torch.Tensor | None = None
        self.head: torch.nn.Linear | None = None
        labels = cfg.labels  # "kmeans", or a labels CSV
        self.fixed = None if labels == "kmeans" else _read_labels(labels.path)

    @property
    def term(self) -> ExtraTerm:
        return ExtraTerm("deep_cluster", self.cfg.weight, self.loss)

    def on_epoch_start(self, epoch: int) -> None:
        indices = self.data.indices.tolist()
        if self.fixed is not None:
            missing = [i for i in indices if i not in self.fixed]
            if missing:
                raise DataError(f"clean.deep_cluster.labels: no label for pair {missing[0]} "
                                f"(and {len(missing) - 1} more) of the cleaning set")
            labels = np.array([self.fixed[i] for i in indices])
        else:
            labels, centroids = self._kmeans(self._embed(indices), epoch)
            self.centroids = torch.from_numpy(centroids).to(self.device)
        self.labels = dict(zip(indices, labels.tolist()))
        reset = self.cfg.head_reset == "every_epoch" or self.fixed is None
        if self.head is None or reset:
            k = len(self.centroids) if self.fixed is None else int(labels.max()) + 1
            self._new_head(k, epoch)

    def _new_head(self, k: int, epoch: int) -> None:
        generator_ = torch.Generator().manual_seed(derive_seed(self.seed, "cluster-head", epoch)
                                                   % (1 << 63))
        self.head = torch.nn.Linear(self.model.visual.output_dim, k)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator_)
                                   * 0.01)
            self.head.bias.zero_()
        self.head.to(self.device)
        replace_group(self.optimizer, "deep_cluster", list(self.head.parameters()),
                      weight_decay=0.0)

    def loss(self, model, batch, features) -> torch.Tensor:
        image = features["image"]
        if self.fixed is None and self.cfg.assign == "online":
            distances = torch.cdist(image.detach().float(), self.centroids.float())
            targets = distances.argmin(dim=1)
        else:
            targets = torch.tensor([self.labels[int(i)] for i in batch["index"]],
                                   device=self.device)
        return F.cross_entropy(self.head(image), targets)

    @torch.no_grad()
    def _embed(self, indices: list[int]) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        chunks = [indices[i:i + 256] for i in range(0, len(indices), 256)]
        out = []
        for _, images in iterate(self.data.pairs.images, chunks, self.data.workers):
            x = self.data.normalize(to_unit(images.to(self.device, non_blocking=True)))
            out.append(F.normalize(self.model.encode_image(x), dim=-1).float().cpu())
        self.model.train(was_training)
        return torch.cat(out).numpy()

    def _kmeans(self, embeddings: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(each embedding's cluster, the centroids [k, d])."""
        import faiss

        k = min(self.cfg.k, len(embeddings))
        if k < self.cfg.k:
            self.log(f"deep_cluster: k = {self.cfg.k} > {len(embeddings)} samples; using {k}")
        kmeans = faiss.Kmeans(embeddings.shape[1], k, niter=self.cfg.iterations,
                              spherical=True, seed=derive_seed(self.seed, "kmeans", epoch) % (1 << 31),
                              verbose=False)
        kmeans.train(np.ascontiguousarray(embeddings, dtype=np.float32))
        _, assigned = kmeans.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), 1)
        return assigned[:, 0].astype(np.int64), np.ascontiguousarray(kmeans.centroids,
                                                                     dtype=np.float32)


def _read_labels(path: str) -> dict[int, int]:
    try:
        rows = read_csv_rows(path, DataError)
    except DataError as exc:
        raise DataError(f"clean.deep_cluster.labels: {exc}") from None
    if not rows or not {"index", "label"} <= set(rows[0]):
        raise DataError(f"clean.deep_cluster.labels: {path} needs columns index,label")
    labels = {}
    for line, row in enumerate(rows, start=2):
        index, label = (row["index"] or "").strip(), (row["label"] or "").strip()
        if not (index.isdigit() and label.isdigit()):
            raise DataError(f"clean.deep_cluster.labels: {path}: line {line}: index and label "
                            f"must be non-negative integers, got {index!r}, {label!r}")
        labels[int(index)] = int(label)
    return labels


def perturbed(start: dict[str, torch.Tensor], parameters: Collection[str], shrink: float,
              sigma: float, noise: str, fresh: dict[str, torch.Tensor] | None,
              seed: int) -> dict[str, torch.Tensor]:
    """theta * shrink + sigma * eps on the named parameters; buffers (BatchNorm running
    statistics, the attention mask) are kept as they are, as the original's `main.py` does.

    eps is N(0, 1) (the paper's formula, p ~ N(0, sigma^2)) or, with noise = "init", the same
    parameter of a fresh initialisation (what the original code adds)."""
    g = generator(seed, "perturb", str(shrink), str(sigma))
    out = dict(start)
    for name, value in start.items():
        if name not in parameters:
            continue
        eps = fresh[name] if noise == "init" else torch.randn(value.shape, generator=g)
        out[name] = shrink * value + sigma * eps.to(value.dtype)
    return out
