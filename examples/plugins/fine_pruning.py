"""Fine-pruning (after Liu et al., RAID 2018) as an xspec plugin: a `[clean] fine_pruning` table.

Before cleaning starts, the defence runs the model over the cleaning set once, measures the mean
activation of every hidden unit of the last image block (a ViT's last MLP, `mlp.c_fc` after its
GELU; a ResNet's last bottleneck, `bn3` channels), and prunes the `prune_ratio` least active
ones: their weights are set to zero. Backdoor units tend to be dormant on clean inputs, so this
removes them. Cleaning (the fine-tuning) then trains as usual, and an after-step hook puts the
pruned weights back to zero after every optimiser step, so they stay pruned (AdamW's moments
and weight decay would otherwise revive them).

    [clean]
    fine_pruning = { prune_ratio = 0.2 }

Written against docs/EXTENDING.md only: `setup.clean_batches()` iterates the cleaning images,
`Pieces(after_step=...)` is the hook.
"""

from __future__ import annotations

from xspec.extend import Fraction, Pieces, XspecModel, register_defence


class FinePruning(XspecModel):
    """Prune the least active units of the last image block, then clean with them held at 0."""

    prune_ratio: Fraction = 0.2
    """Share of the last image block's hidden units pruned."""


def _target(model):
    """(module whose output is measured, [(parameter, dim of the unit)] zeroed per unit)."""
    visual = model.visual
    if hasattr(visual, "transformer"):
        mlp = visual.transformer.resblocks[-1].mlp
        return mlp.gelu, [(mlp.c_fc.weight, 0), (mlp.c_fc.bias, 0), (mlp.c_proj.weight, 1)]
    block = visual.layer4[-1]
    return block.bn3, [(block.bn3.weight, 0), (block.bn3.bias, 0)]


def _mean_activation(model, setup, module):
    import torch

    total, count = None, 0

    def record(_, __, output):
        nonlocal total, count
        # units are the last dim of a ViT MLP ([tokens, batch, units] or [batch, tokens, units])
        # and dim 1 of a conv map ([batch, channels, h, w])
        values = output.flatten(0, -2) if output.dim() == 3 else output.transpose(0, 1).flatten(1).T
        total = values.sum(0) if total is None else total + values.sum(0)
        count += values.shape[0]

    handle = module.register_forward_hook(record)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in setup.clean_batches():
            model.encode_image(batch["image"])
    model.train(was_training)
    handle.remove()
    return total / max(count, 1)


def build(spec: FinePruning, setup) -> Pieces:
    import torch

    module, params = _target(setup.model)
    activation = _mean_activation(setup.model, setup, module)
    units = activation.numel()
    pruned = torch.argsort(activation)[: int(round(spec.prune_ratio * units))]
    masks = []
    for param, dim in params:
        mask = torch.ones(param.shape[dim], device=param.device, dtype=param.dtype)
        mask[pruned.to(param.device)] = 0
        shape = [1] * param.dim()
        shape[dim] = -1
        masks.append((param, mask.view(shape)))

    def keep_pruned(step: int) -> None:
        with torch.no_grad():
            for param, mask in masks:
                param.mul_(mask)

    keep_pruned(0)
    setup.log(f"fine_pruning: pruned {len(pruned)} of {units} units of the last image block")
    return Pieces(after_step=keep_pruned)


register_defence("fine_pruning", build, annotation=FinePruning | None, default=None,
                 version="1")
