"""`[detect.cognitive_distillation]`: Cognitive Distillation (Huang et al., ICLR 2023): per
image, the smallest mask that keeps its embedding, found by Adam on an L1 + total-variation
objective; a backdoor needs only its trigger, so poisoned images keep small masks
(backdoor_sample_detector/cognitive_distillation.py:29-52, settings of
extract_bd_scores.py:116-118). The score is the mask's L1 norm negated (small mask ->
poisoned, as the CD paper ranks); the original's process_detection_scores.py does not negate
it (docs/FIDELITY.md). The random fill colour comes from the seed."""

from __future__ import annotations

from xspec.extend import PositiveFloat, PositiveInt, XspecModel, register_detector


def _tv(mask):
    import torch

    b, c, h, w = mask.size()
    tv_h = torch.pow(mask[:, :, 1:, :] - mask[:, :, :-1, :], 2).sum(dim=[1, 2, 3])
    tv_w = torch.pow(mask[:, :, :, 1:] - mask[:, :, :, :-1], 2).sum(dim=[1, 2, 3])
    return (tv_h + tv_w) / (c * h * w)


def mask_norms(spec, model, images, seed: int):
    """The L1 norm of each image's distilled mask (the original's return value)."""
    import torch

    from xspec.runtime.seeding import generator

    b, c, h, w = images.shape
    param = torch.nn.Parameter(torch.ones(b, 1, h, w, device=images.device))
    optimizer = torch.optim.Adam([param], lr=spec.lr, betas=(0.1, 0.1))
    with torch.no_grad():
        target = model.encode_image(images)
    fill_gen = generator(seed, "cognitive-distillation")
    with torch.enable_grad():
        for _ in range(spec.steps):
            optimizer.zero_grad()
            mask = (torch.tanh(param) + 1) / 2
            fill = torch.rand(b, c, 1, 1, generator=fill_gen).to(images.device)
            adv = model.encode_image(images * mask + (1 - mask) * fill)
            loss = (adv - target).abs().mean(dim=1)
            loss = loss + spec.gamma * torch.norm(mask, p=1, dim=[1, 2, 3]) + spec.beta * _tv(mask)
            loss.mean().backward()
            optimizer.step()
    return torch.norm(((torch.tanh(param) + 1) / 2).detach(), p=1, dim=[1, 2, 3])


def score(spec, batch):
    return -mask_norms(spec, batch.model, batch.pixels, batch.seed)


@register_detector("cognitive_distillation", score, version="1")
class CognitiveDistillation(XspecModel):
    """Cognitive Distillation mask norms (the costliest detector: `steps` backward passes of
    the image encoder per batch)."""

    lr: PositiveFloat = 0.1
    gamma: PositiveFloat = 0.001
    beta: PositiveFloat = 100.0
    steps: PositiveInt = 100
