"""`[pretrain] roclip`: RoCLIP (Yang et al., NeurIPS 2023; github BigML-CS-UCLA/RoCLIP), a
defence while pre-training on poisoned pairs. A pool of past caption embeddings is kept; every
`every`-th epoch each image is contrasted with its nearest caption in the pool instead of its
own caption, so a poisoned image rarely meets the target caption it was paired with. With
`augment` the images and captions are augmented for the contrastive loss, as the original's
`--cross_aug` (its README's command line).

Original (model/src/train.py:32-53): on epochs with `epoch % break_epoch == 0` (1-based),
`text_nn = pool(image_embeds, update=False)` then `pool(text_embeds, update=True)`;
logits `text_nn @ image^T`, CE both ways; other epochs the plain CLIP loss and no pool update.
The pool (model/src/memory_bank.py) starts as random unit vectors, is a FIFO of size
`memory_bank_size` (21,845 by default, parser.py:47), and the nearest neighbour is by cosine.
xspec keeps the pool after each epoch (checkpoints/roclip_pool_<epoch>.pt), so a killed and
resumed run continues with the pool it had.
"""

from __future__ import annotations

from xspec.extend import PositiveInt, Pieces, Term, XspecModel, register_defence


class RoClip(XspecModel):
    """RoCLIP: contrast images with their nearest captions in a pool every K epochs."""

    pool_size: PositiveInt = 21845
    """Captions kept in the pool (the original's --memory_bank_size default)."""
    every: PositiveInt = 2
    """K: epochs whose number is a multiple of K use the pool (the original's --break_epoch)."""
    augment: bool = True
    """Contrast augmented images with augmented captions (the original's --cross_aug)."""


class CaptionPool:
    """A FIFO of unit caption embeddings, started as random unit vectors (lightly's
    MemoryBankModule, as RoCLIP's memory_bank.py)."""

    def __init__(self, size: int, dim: int, seed: int, device):
        import torch

        from xspec.runtime.seeding import generator

        bank = torch.randn(size, dim, generator=generator(seed, "roclip-pool"))
        self.bank = torch.nn.functional.normalize(bank, dim=-1).to(device)
        self.pointer = 0

    def state(self) -> dict:
        return {"bank": self.bank.cpu(), "pointer": self.pointer}

    @classmethod
    def restored(cls, state: dict, device) -> "CaptionPool":
        """The pool as `state()` saved it (a resumed run continues with it)."""
        pool = cls.__new__(cls)
        pool.bank, pool.pointer = state["bank"].to(device), int(state["pointer"])
        return pool

    def nearest(self, queries):
        """The pool entry of highest cosine similarity to each query."""
        import torch.nn.functional as F

        similarity = F.normalize(queries, dim=1) @ F.normalize(self.bank, dim=1).t()
        return self.bank[similarity.argmax(dim=1)]

    def push(self, batch) -> None:
        """Replace the oldest entries (the original drops what overflows the end)."""
        batch = batch.detach().to(self.bank.dtype)
        size, ptr = len(self.bank), self.pointer
        if ptr + len(batch) >= size:
            self.bank[ptr:] = batch[: size - ptr]
            self.pointer = 0
        else:
            self.bank[ptr:ptr + len(batch)] = batch
            self.pointer = ptr + len(batch)


def roclip_loss(image, text, logit_scale, pool: CaptionPool):
    """The original's RoCLIP-epoch loss: each image against the pool's nearest caption."""
    import torch
    import torch.nn.functional as F

    nearest = pool.nearest(image.detach()).to(image.dtype)
    pool.push(text)
    logits_image_per_text = logit_scale * nearest @ image.t()
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits_image_per_text.t(), target)
            + F.cross_entropy(logits_image_per_text, target)) / 2


def build(spec: RoClip, setup) -> Pieces:
    from xspec.runtime.objectives import info_nce

    from xspec.runtime.defence_state import EpochState

    state = {"epoch": 0, "pool": None}
    image_key, text_key = ("image_aug", "text_aug") if spec.augment else ("image", "text")
    kept = EpochState(setup.checkpoints, "roclip_pool")

    def on_epoch_start(epoch: int) -> None:
        state["epoch"] = epoch
        if state["pool"] is None and (saved := kept.load(epoch - 1)) is not None:
            state["pool"] = CaptionPool.restored(saved, setup.device)  # a resumed run

    def on_epoch_end(epoch: int) -> None:
        if state["pool"] is not None:
            kept.save(epoch, state["pool"].state())

    def mmcl(model, batch, features):
        image, text = features[image_key], features[text_key]
        scale = model.logit_scale.exp()
        if state["epoch"] % spec.every:
            return info_nce(image, text, scale)
        if state["pool"] is None:
            state["pool"] = CaptionPool(spec.pool_size, text.shape[1], setup.seed, text.device)
        return roclip_loss(image, text, scale, state["pool"])

    weight = setup.config.mmcl_weight
    return Pieces(terms=[Term("mmcl", weight, mmcl, replaces=True)],
                  on_epoch_start=on_epoch_start, on_epoch_end=on_epoch_end)


def views(spec: RoClip) -> set[str]:
    return {"image_aug", "text_aug"} if spec.augment else set()


register_defence("roclip", build, annotation=RoClip | None, default=None, version="1",
                 table="pretrain", views=views,
                 description="RoCLIP (Yang et al. 2023): every K epochs, images contrasted with "
                             "their nearest captions in a pool of past captions.")
