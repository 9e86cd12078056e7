"""BadCLIP's torch half: the trigger optimisation node and the attack that pastes its patch.

Spec side and references to the original code: `xspec/builtin/badclip.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xspec.errors import DataError
from xspec.runtime import models
from xspec.runtime.attacks.base import TemplatedAttack
from xspec.runtime.attacks.patch import paste, target_pattern
from xspec.runtime.data import open_pairs
from xspec.runtime.objectives import info_nce
from xspec.runtime.pipeline import Normalizer, to_unit
from xspec.runtime.records import MetricsLog, save_checkpoint
from xspec.runtime.seeding import generator, set_seed

PATCH_FILE = "patch.pt"


def initial_patch(size: int, seed: int) -> Tensor:
    """The original's random init: N(0.5, 0.25) clipped to [0, 1] (`:289-291`), seeded."""
    noise = torch.randn(3, size, size, generator=generator(seed, "badclip-init"))
    return (0.5 + 0.25 * noise).clamp(0, 1)


def corners(keys: list[int], location: str, size: int, height: int, width: int,
            seed: int) -> tuple[Tensor, Tensor]:
    """Top-left rows and columns: the centre as the original computes it (`:188-195`), or a
    position drawn from (seed, key)."""
    if location == "middle":
        row, col = int(int(height / 2) - size / 2), int(int(width / 2) - size / 2)
        return torch.full((len(keys),), row), torch.full((len(keys),), col)
    rows, cols = [], []
    for key in keys:
        gen = generator(seed, "badclip-location", key)
        rows.append(int(torch.randint(0, height - size + 1, (1,), generator=gen)))
        cols.append(int(torch.randint(0, width - size + 1, (1,), generator=gen)))
    return torch.tensor(rows), torch.tensor(cols)


def patched(images01: Tensor, patch: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """The images with `patch` (clamped to [0, 1], differentiable inside) pasted; not in place."""
    out = images01.clone()
    batch = len(out)
    paste(out, patch.clamp(0, 1).unsqueeze(0).expand(batch, -1, -1, -1).to(out.dtype),
          rows.to(out.device), cols.to(out.device))
    return out


def badclip_loss(anchor: Tensor, text: Tensor, clean: Tensor, positives: Tensor | None,
                 logit_scale: Tensor, text_weight: float, image_weight: float,
                 margin: float) -> tuple[Tensor, dict[str, Tensor]]:
    """text: CLIP's symmetric InfoNCE between patched images and their captions (`:108-126`);
    triplet: `nn.TripletMarginLoss(margin)` with the patched image as anchor, a natural target
    image as positive and the clean image as negative (`:144-165`). Features L2-normalised."""
    parts: dict[str, Tensor] = {}
    total = anchor.new_zeros(())
    if text_weight:
        parts["text"] = info_nce(anchor, text, logit_scale)
        total = total + text_weight * parts["text"]
    if image_weight and positives is not None:
        parts["triplet"] = F.triplet_margin_loss(anchor, positives, clean, margin=margin)
        total = total + image_weight * parts["triplet"]
    return total, parts


class Optimisation:
    """The frozen surrogate, the target-naming pool, and one pass of the patch over it."""

    def __init__(self, cfg, model, normalize: Normalizer, tokenizer, pairs, device):
        self.cfg, self.device, self.model = cfg, device, model
        self.normalize, self.tokenizer, self.pairs = normalize, tokenizer, pairs
        pattern = target_pattern(cfg.target)
        pool = np.array([i for i, c in enumerate(self.pairs.captions) if pattern.search(c)],
                        dtype=np.int64)
        if len(pool) < 2:
            raise DataError(f"attack.target {cfg.target!r}: {len(pool)} captions of data.train "
                            "name it; BadCLIP optimises its patch on pairs that do")
        perm = torch.randperm(len(pool), generator=generator(cfg.seed, "badclip-pool")).numpy()
        self.pool = np.sort(pool[perm[:cfg.images]])
        self.batch = min(cfg.batch_size, len(self.pool))
        self.targets = self._embed(self.pool) if cfg.image_weight else None

    @classmethod
    def load(cls, ctx, cfg) -> "Optimisation":
        """The surrogate from its checkpoint (a dependency's or a file) and data.train."""
        if "input" in cfg.surrogate:
            from xspec.runtime.handoffs import checkpoint_of

            arch, path = checkpoint_of(ctx.dep(cfg.surrogate["input"]))
        else:
            arch, path = cfg.arch, cfg.surrogate["path"]
        model = models.create(arch, {"path": path}, ctx.device, ctx.log).eval()
        model.requires_grad_(False)
        mean, std, size = models.image_stats(model)
        if cfg.size > size:
            raise DataError(f"attack.size = {cfg.size} exceeds the surrogate's {size}x{size} "
                            "images")
        pairs = open_pairs(cfg.train, size, ctx.settings.on_bad_image)
        return cls(cfg, model, Normalizer.of(mean, std), models.tokenizer(arch), pairs,
                   ctx.device)

    @torch.no_grad()
    def _embed(self, indices: np.ndarray) -> Tensor:
        out = []
        for start in range(0, len(indices), 256):
            _, images = self.pairs.images.load(indices[start:start + 256].tolist())
            x = self.normalize(to_unit(images).to(self.device))
            out.append(F.normalize(self.model.encode_image(x), dim=-1))
        return torch.cat(out)

    def batches(self, epoch: int):
        perm = torch.randperm(len(self.pool), generator=generator(self.cfg.seed, "badclip-order",
                                                                   epoch)).numpy()
        order = self.pool[perm]
        for i in range(len(order) // self.batch):  # drop_last, as the original's loader
            yield epoch, order[i * self.batch:(i + 1) * self.batch].tolist()

    def loss(self, patch: Tensor, epoch: int, wanted: list[int]) -> tuple[Tensor, dict]:
        cfg = self.cfg
        kept, images = self.pairs.images.load(wanted)
        x = to_unit(images).to(self.device)
        rows, cols = corners([epoch * (1 << 32) + k for k in kept], cfg.location, cfg.size,
                             x.shape[-2], x.shape[-1], cfg.seed)
        anchor = F.normalize(self.model.encode_image(self.normalize(patched(x, patch, rows,
                                                                            cols))), dim=-1)
        with torch.no_grad():
            text = F.normalize(self.model.encode_text(self.tokenizer(
                [self.pairs.captions[i] for i in kept]).to(self.device)), dim=-1)
            clean = F.normalize(self.model.encode_image(self.normalize(x)), dim=-1) \
                if cfg.image_weight else None
        positives = None
        if self.targets is not None:
            pick = torch.randint(0, len(self.targets), (len(kept),),
                                 generator=generator(cfg.seed, "badclip-positives", epoch,
                                                     kept[0]))
            positives = self.targets[pick.to(self.targets.device)]
        return badclip_loss(anchor, text, clean, positives, self.model.logit_scale.exp(),
                            cfg.text_weight, cfg.image_weight, cfg.margin)


def optimise_patch(opt: Optimisation, log=lambda message: None) -> tuple[Tensor, dict]:
    """Adam on the patch, epoch by epoch: (the patch as stored, uint8; {epoch: mean loss},
    epoch 0 the starting patch's)."""
    cfg = opt.cfg
    patch = initial_patch(cfg.size, cfg.seed).to(opt.device).requires_grad_(True)
    adam = torch.optim.Adam([patch], lr=cfg.lr)
    with torch.no_grad():
        losses = {0: float(np.mean([float(opt.loss(patch, 0, wanted)[0])
                                    for _, wanted in opt.batches(0)]))}
    for epoch in range(1, cfg.epochs + 1):
        values = []
        for _, wanted in opt.batches(epoch):
            loss, _ = opt.loss(patch, epoch, wanted)
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            values.append(float(loss.detach()))
        losses[epoch] = float(np.mean(values))
        log(f"epoch {epoch}/{cfg.epochs}: badclip loss {losses[epoch]:.4f}")
    stored = patch.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return stored, losses


def optimise(ctx) -> None:
    """The badclip_trigger node: writes patch.pt (the patch as uint8) and the loss per epoch."""
    cfg = ctx.cfg
    set_seed(cfg.seed)
    opt = Optimisation.load(ctx, cfg)
    stored, losses = optimise_patch(opt, ctx.log)
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows = []
    steps = len(opt.pool) // opt.batch
    for epoch, value in losses.items():
        metrics.add(epoch, "train", "badclip_loss", value, steps, epoch * steps)
    metrics.flush()
    save_checkpoint(ctx.run.path / PATCH_FILE, {"patch": stored, "location": cfg.location,
                                                "node_id": ctx.node["id"]})
    ctx.log(f"patch {cfg.size}x{cfg.size} saved; loss {losses[0]:.4f} -> "
            f"{losses[cfg.epochs]:.4f}")


def load_patch(trigger_node: str) -> dict:
    from xspec.runtime.current import CURRENT
    from xspec.runtime.records import load_checkpoint

    workspace = CURRENT["workspace"]
    if workspace is None:
        raise DataError("attack.kind = 'badclip' reads its patch from the workspace; run it "
                        "through xspec (run, submit)")
    path = workspace.runs / f"badclip_trigger-{trigger_node[:12]}" / PATCH_FILE
    if not path.exists():
        raise DataError(f"{path}: the BadCLIP patch is missing; its badclip_trigger node has "
                        "not run")
    return load_checkpoint(path)


class BadClipAttack(TemplatedAttack):
    """Pastes the optimised patch (as stored: uint8) on the poisoned and triggered images."""

    def __init__(self, cfg: Any, seed: int, patch: Tensor | None = None):
        super().__init__(cfg, seed)
        if patch is None:
            if cfg.trigger_node is None:
                raise DataError("attack.trigger_node is unset: compile the spec with xspec")
            patch = load_patch(cfg.trigger_node)["patch"]
        self.patch = patch.float() / 255 if patch.dtype == torch.uint8 else patch.float()
        self.size, self.location = self.patch.shape[-1], cfg.location

    def apply(self, images: Tensor, keys: Tensor) -> Tensor:
        _, _, height, width = images.shape
        if self.size > min(height, width):
            raise DataError(f"attack.size: {self.size} exceeds the image size {height}x{width}")
        rows, cols = corners([int(k) for k in keys.tolist()], self.location, self.size, height,
                             width, self.seed)
        with torch.no_grad():
            return patched(images, self.patch.to(images.device), rows, cols)
