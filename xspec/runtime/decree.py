"""DECREE's trigger inversion (Feng et al., CVPR 2023; github GiantSeaweed/DECREE, main.py),
the decree node's stage.

A mask m (H x W) and a patch p (3 x H x W, in 0..255) live in tanh space. Each step stamps the
shadow batch, x' = clip((1 - m) x + m p, 0, 255), normalises it, embeds it with the frozen image
encoder and minimises  -mean pairwise cosine(embeddings) + lambda * ||m||_1  (the mask's L1 over
its three channel copies). lambda adapts: x5 after more than 5 successive successful steps
(cosine > threshold), /5 after more than 5 failing ones; the smallest successful mask's L1 is
kept, and the search stops once the epoch's mean cosine succeeds and that best norm has not
improved for more than 35 steps. Line references are to main.py and utils.py of commit 9c13b88.
Spec side: `xspec.spec.decree`; FIDELITY.md has the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xspec.errors import DataError
from xspec.runtime import models
from xspec.runtime.data import open_eval
from xspec.runtime.records import MetricsLog, save_checkpoint
from xspec.runtime.seeding import generator, set_seed

EPS = 1e-7  # utils.py:66-67
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # main.py:67-69
TRIGGER_FILE = "trigger.pt"


def to_tanh_space(values: Tensor) -> Tensor:
    """main.py:165-166."""
    return torch.arctanh((values - 0.5) * (2 - EPS))


def mask_of(param: Tensor) -> Tensor:
    """main.py:258,260: the mask in [0, 1]."""
    return torch.clip(torch.tanh(param) / (2 - EPS) + 0.5, min=0, max=1)


def patch_of(param: Tensor) -> Tensor:
    """main.py:259,261: the patch in [0, 255]."""
    return torch.clip((torch.tanh(param) / (2 - EPS) + 0.5) * 255, min=0, max=255)


def stamp(images255: Tensor, mask: Tensor, patch: Tensor) -> Tensor:
    """main.py:263-265: images [B, 3, H, W] in 0..255, mask [H, W], patch [3, H, W]."""
    return torch.clip((1 - mask) * images255 + mask * patch, min=0, max=255)


def self_cosine(features: Tensor) -> Tensor:
    """utils.py:6-20: the mean cosine similarity of each embedding with the batch's others."""
    n = features.shape[0]
    unit = F.normalize(features, dim=-1)
    sim = unit @ unit.t()
    off = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    return sim.masked_select(off).view(n, -1).mean()


def lr_at(epoch: int, lr: float) -> float:
    """main.py:29-45 for CLIP and ImageNet encoders: lr, then 0.1 from epoch 200, 0.05 from 500."""
    return lr if epoch < 200 else 0.1 if epoch < 500 else 0.05


def initial(size: int, mask_init: str, seed: int) -> tuple[Tensor, Tensor]:
    """(mask [H, W], patch [3, H, W]) in [0, 1], float64: uniform (main.py:157-161), or with
    `orc` a square of 1s over [24, 200) of 224 px scaled to `size` (main.py:19-27,107,150-156).
    The patch is drawn H x W x 3 as the original's and moved to channels first."""
    gen = generator(seed, "decree-init")
    if mask_init == "orc":
        lo, hi = round(24 * size / 224), round(200 * size / 224)
        mask = torch.full((size, size), EPS, dtype=torch.float64)
        mask[lo:hi, lo:hi] = 1.0
    else:
        mask = torch.rand((size, size), dtype=torch.float64, generator=gen)
    patch = torch.rand((size, size, 3), dtype=torch.float64, generator=gen).permute(2, 0, 1)
    return mask, patch.contiguous()


@dataclass
class Controller:
    """lambda's adaptation and the early stop, main.py:213-238 (CLIP values) and 301-345."""

    threshold: float
    lam: float = 1e-3
    init_lam: float = 1e-3
    lam_min: float = 1e-7
    adapt: float = 5.0
    patience: int = 5
    stop_patience: int = 35
    best: float = 1 / EPS
    stop_best: float = 1 / EPS
    stop_count: int = 0
    up: int = 0
    down: int = 0
    reset_count: int = 0

    def after_step(self, cos: float, reg: float) -> bool:
        """Record one step's cosine and L1; True where its mask is the best trigger yet."""
        success = abs(cos) > self.threshold
        better = success and reg < self.best
        if better:
            self.best = reg
        if self.best < 1 / EPS:
            self.stop_count = self.stop_count + 1 if self.best >= self.stop_best else 0
        self.stop_best = min(self.best, self.stop_best)
        if self.lam < self.lam_min and success:
            self.reset_count += 1
            if self.reset_count > 2 * self.patience:
                self.lam, self.up, self.down = self.init_lam, 0, 0
        else:
            self.reset_count = 0
        self.up, self.down = (self.up + 1, 0) if success else (0, self.down + 1)
        if self.up > self.patience:
            if self.lam < 1e5:
                self.lam *= self.adapt
            self.up = 0
        elif self.down > self.patience:
            if self.lam >= self.lam_min:
                self.lam /= self.adapt
            self.down = 0
        return better

    def stops(self, epoch_cos: float) -> bool:
        """main.py:374-375."""
        return abs(epoch_cos) > self.threshold and self.stop_count > self.stop_patience


@dataclass
class Inversion:
    l1: float  # the best successful mask's L1 over 3 x H x W; 1 / EPS where none succeeded
    pl1: float  # l1 / (3 H W), at most 1
    found: bool
    epochs: int  # epochs run
    mask: Tensor | None  # [H, W] of the best trigger
    patch: Tensor | None  # [3, H, W] in 0..255
    history: list[dict] = field(default_factory=list)  # per epoch: loss, cos, reg, lambda


def invert(encode: Callable[[Tensor], Tensor], shadow: Tensor, settings, stats, seed: int,
           order: Callable[[int], Tensor] | None = None,
           log: Callable[[str], None] = lambda m: None) -> Inversion:
    """The search over `shadow` (uint8 [N, 3, H, W]); `stats` is the (mean, std) inputs are
    normalised with; `order(epoch)` the shadow set's order in that epoch (default: shuffled
    from the seed, as the original's shuffled loader)."""
    n, size = shadow.shape[0], shadow.shape[-1]
    if n < 2:
        raise DataError(f"decree: the shadow set has {n} image(s); the cosine needs two")
    device = shadow.device
    mask0, patch0 = initial(size, settings.mask_init, seed)
    mask_p = to_tanh_space(mask0).to(device).requires_grad_(True)
    patch_p = to_tanh_space(patch0).to(device).requires_grad_(True)
    adam = torch.optim.Adam([mask_p, patch_p], lr=settings.lr, betas=(0.5, 0.9))
    mean, std = (torch.tensor(v, dtype=torch.float64, device=device).view(3, 1, 1)
                 for v in stats)
    order = order or (lambda e: torch.randperm(n, generator=generator(seed, "decree-order", e)))
    ctl, best, history = Controller(settings.threshold), (None, None), []
    batch = settings.batch_size
    for epoch in range(settings.epochs):
        for group in adam.param_groups:
            group["lr"] = lr_at(epoch, settings.lr)
        perm, sums = order(epoch), {"loss": [], "cos": [], "reg": []}
        for start in range(0, n, batch):
            rows = perm[start:start + batch]
            if len(rows) < 2:  # a lone image has no pairs (the original's mean would be NaN)
                continue
            x = shadow[rows.to(shadow.device)].to(torch.float64)
            mask, patch = mask_of(mask_p), patch_of(patch_p)
            stamped = (stamp(x, mask, patch) / 255.0 - mean) / std
            cos = self_cosine(encode(stamped.to(torch.float32)))
            reg = mask.expand(3, -1, -1).sum()
            loss = -cos + reg * ctl.lam
            adam.zero_grad()
            loss.backward()
            adam.step()
            for key, value in (("loss", loss), ("cos", cos), ("reg", reg)):
                sums[key].append(float(value.detach()))
            if ctl.after_step(-float(cos.detach()), float(reg.detach())):
                best = (mask.detach().clone(), patch.detach().clone())
        means = {k: float(np.mean(v)) for k, v in sums.items()}
        history.append({**means, "lambda": ctl.lam})
        log(f"epoch {epoch}: loss {means['loss']:.4f}, cos {means['cos']:.4f}, reg "
            f"{means['reg']:.2f}, best {ctl.best:.2f}")
        if ctl.stops(means["cos"]):
            break
    found = best[0] is not None
    return Inversion(ctl.best, min(1.0, ctl.best / (3 * size * size)), found, len(history),
                     best[0], best[1], history)


def shadow_images(cfg, size: int, on_bad_image: str) -> Tensor:
    """`cfg.shadow` images of data.eval, drawn from the seed (uint8 [N, 3, size, size])."""
    evalset = open_eval(cfg.source, size, on_bad_image)
    total = len(evalset.labels)
    pick = torch.randperm(total, generator=generator(cfg.seed, "decree-shadow"))
    _, images = evalset.images.load(sorted(pick[:min(cfg.shadow, total)].tolist()))
    return images


def decree(ctx) -> None:
    """The decree node: inverts a trigger against its dependency's image encoder; writes
    trigger.pt and metrics (split "decree": l1, pl1, found, flagged, epochs)."""
    from xspec.runtime.handoffs import checkpoint_of

    cfg = ctx.cfg
    set_seed(cfg.seed)
    arch, path = checkpoint_of(ctx.dep(cfg.input))
    model = models.create(arch, {"path": path}, ctx.device, ctx.log).eval()
    model.requires_grad_(False)
    mean, std, size = models.image_stats(model)
    shadow = shadow_images(cfg, size, ctx.settings.on_bad_image).to(ctx.device)
    stats = IMAGENET if cfg.normalise == "imagenet" else (mean, std)
    result = invert(model.encode_image, shadow, cfg, stats, cfg.seed, log=ctx.log)
    flagged = result.found and result.pl1 < cfg.pl1_threshold
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows = []
    for epoch, row in enumerate(result.history, start=1):
        for key in ("loss", "cos", "reg", "lambda"):
            metrics.add(epoch, "train", f"decree_{key}", row[key])
    for key, value in (("l1", result.l1), ("pl1", result.pl1), ("found", result.found),
                       ("flagged", flagged), ("epochs", result.epochs)):
        metrics.add(result.epochs, "decree", key, float(value), len(shadow))
    metrics.flush()
    save_checkpoint(ctx.run.path / TRIGGER_FILE, {
        "mask": None if result.mask is None else result.mask.float().cpu(),
        "patch": None if result.patch is None else result.patch.round().to(torch.uint8).cpu(),
        "l1": result.l1, "pl1": result.pl1, "node_id": ctx.node["id"]})
    ctx.log(f"decree: L1 {result.l1:.2f}, PL1 {result.pl1:.4f} after {result.epochs} epochs; "
            f"{'flagged' if flagged else 'not flagged'} (PL1 threshold {cfg.pl1_threshold})")
