"""`[clean] par`: Perturb-and-Recover (Singh, Croce and Hein 2024; github nmndeep/PerturbAndRecover).

Cleaning with the CLIP loss while pushing the image and text embeddings away from those of the
frozen starting (poisoned) model, each push switched off once its distance passes `threshold`:

    loss = MMCL(student) - weight * (t(d_image) + t(d_text)),   d = mean_i ||s_i - p_i||^2,
    t(d) = d if d <= threshold else 0

on L2-normalised embeddings of the same augmented batch (losses.py:53-91). Images are augmented
as the original's training transform does (utils.py:142-148,190-198): with probability 0.5 add
`clip(N(0, 0.2), 0, 1)` to the [0, 1] image and clip it (the noise is one-sided: the original
clips the noise itself), then after normalisation with probability 0.5 erase a square of 0.5-1 %
of the image to 0. The logit scale is not trained (the original passes `logit_scale.exp()
.item()`, train.py:364). Run it with objective = "mmcl". docs/FIDELITY.md lists what differs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from xspec.extend import Fraction, PositiveFloat, XspecModel, register_defence


class PerturbAndRecover(XspecModel):
    threshold: PositiveFloat = 2.15
    """tau: a squared-distance term above it is set to 0 (train.py:60 --loss-thresh)."""
    weight: PositiveFloat = 0.5
    """The factor of the two distance terms (losses.py:91)."""
    noise_std: PositiveFloat = 0.2
    noise_p: Fraction = 0.5
    erase_p: Fraction = 0.5
    erase_scale: tuple[Annotated[float, Field(gt=0, lt=1)],
                       Annotated[float, Field(gt=0, lt=1)]] = (0.005, 0.01)
    """The erased square's share of the image, drawn uniformly in this range."""
    logit_scale: Literal["frozen", "trained"] = "frozen"

    @model_validator(mode="after")
    def _scale_ordered(self):
        if self.erase_scale[0] > self.erase_scale[1]:
            raise ValueError(f"erase_scale = {list(self.erase_scale)}: the first bound must not "
                             "exceed the second")
        return self


def thresholded(distance, threshold: float):
    """The original's `threshold_tensor(d, tau, 0.0)`: d where d <= tau, else 0 (no gradient)."""
    import torch

    return torch.where(distance > threshold, torch.zeros_like(distance), distance)


def squared_distance(student, frozen):
    """Mean over the batch of the summed squared difference (losses.py:100-112, 'mean')."""
    return ((student - frozen) ** 2).sum(dim=1).mean()


def augment(images01, generators, spec: PerturbAndRecover):
    """The noise half of the augmentation, on [0, 1] images; one generator per image."""
    import torch

    out = images01.clone()
    for i, gen in enumerate(generators):
        if float(torch.rand((), generator=gen)) < spec.noise_p:
            noise = torch.randn(out[i].shape, generator=gen).to(out.device) * spec.noise_std
            out[i] = (out[i] + noise.clip(0, 1)).clip(0, 1)
    return out


def erase(images, generators, spec: PerturbAndRecover):
    """torchvision RandomErasing(p, scale, ratio=(1, 1), value=0) on normalised images."""
    import torch

    height, width = images.shape[-2:]
    for i, gen in enumerate(generators):
        if float(torch.rand((), generator=gen)) >= spec.erase_p:
            continue
        low, high = spec.erase_scale
        for _ in range(10):  # torchvision's attempts
            area = height * width * (low + (high - low) * float(torch.rand((), generator=gen)))
            side = int(round(area ** 0.5))
            if side < height and side < width:
                top = int(torch.randint(0, height - side + 1, (1,), generator=gen))
                left = int(torch.randint(0, width - side + 1, (1,), generator=gen))
                images[i, :, top:top + side, left:left + side] = 0
                break
    return images


def build(spec: PerturbAndRecover, setup):
    import copy

    import torch

    from xspec.errors import DataError
    from xspec.extend import Pieces, Term
    from xspec.runtime.seeding import generator

    frozen = copy.deepcopy(setup.model)
    if setup.start_parameters is not None:  # a resumed run: the node's starting weights
        start = setup.start_parameters()
        with torch.no_grad():
            for name, p in frozen.named_parameters():
                if name in start:
                    p.copy_(start[name])
    frozen.eval().requires_grad_(False)
    if spec.logit_scale == "frozen":
        setup.model.logit_scale.requires_grad_(False)
    normalize, epoch = setup.data.normalize, [0]

    def on_epoch_start(current: int) -> None:
        epoch[0] = current

    def transform(batch: dict) -> dict:
        gens = [generator(setup.seed, "par-augment", epoch[0], int(i)) for i in batch["index"]]
        images = batch["image"] * normalize.std.to(batch["image"]) + normalize.mean.to(
            batch["image"])
        images = normalize(augment(images, gens, spec))
        return {**batch, "image": erase(images, gens, spec)}

    def push(model, batch, features):
        if len(features["image"]) != len(batch["image"]):
            raise DataError("clean.par compares this process's batch with the frozen model's: "
                            "run it on one GPU (or the CPU)")
        with torch.no_grad():
            image = torch.nn.functional.normalize(frozen.encode_image(batch["image"]), dim=-1)
            text = torch.nn.functional.normalize(frozen.encode_text(batch["text"]), dim=-1)
        return (thresholded(squared_distance(features["image"], image), spec.threshold)
                + thresholded(squared_distance(features["text"], text), spec.threshold))

    return Pieces(terms=[Term("par_distance", -spec.weight, push)],
                  on_epoch_start=on_epoch_start, transform=transform)


register_defence("par", build, annotation=PerturbAndRecover | None, default=None, version="1",
                 description="Perturb-and-Recover (Singh et al. 2024): CLIP loss minus the "
                             "thresholded distance to the frozen starting model.")
