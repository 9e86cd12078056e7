"""Fused packing: K cleaning models of one architecture stepped as one stacked model.

`[run] pack = K` (xspec/runtime/packed.py) steps the members one after the other: K forward and
backward passes of a small model, each too small to fill a GPU. Here the members' parameters
are stacked (`torch.func.stack_module_state`) and one `vmap` of `grad_and_value` over
`functional_call` computes every member's loss and gradients in batched kernels; the gradients
are written to each member's own `.grad`, so each member's own optimiser (its learning rate,
weight decay) then steps as before. Arithmetic per member is the sequential one up to float
reassociation (tests/runtime/test_fused.py).

State of the work: the fused step on the MMCL loss of an open_clip model (what CleanCLIP's
fine-tuning with `ssl_weight = 0` computes) is tested against sequential steps; the packed
epoch loop does not call it yet (no spec option selects it), see the report of issue 25.
Members must share the architecture and have no dropout (`vmap` refuses random ops).
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from xspec.runtime.objectives import info_nce


def mmcl_of(outputs) -> torch.Tensor:
    """CLIP's loss from an open_clip forward's (image, text, logit_scale) output."""
    if isinstance(outputs, dict):
        outputs = (outputs["image_features"], outputs["text_features"], outputs["logit_scale"])
    image, text, scale = outputs[:3]
    return info_nce(image, text, scale)


class FusedPack:
    """K models of one architecture whose gradients come from one vmapped pass."""

    def __init__(self, models: Sequence[torch.nn.Module],
                 loss_of: Callable[[object], torch.Tensor] = mmcl_of):
        shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("fused packing needs members of one architecture")
        self.models, self.loss_of = list(models), loss_of
        self._skeleton = copy.deepcopy(models[0]).to("meta")

    def _loss(self, params, buffers, *inputs):
        return self.loss_of(functional_call(self._skeleton, (params, buffers), inputs))

    def backward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Every member's loss on the same inputs (a [K] tensor); sets each member's `.grad`."""
        self._skeleton.train(self.models[0].training)
        params, buffers = stack_module_state(self.models)
        dims = (0, 0) + (None,) * len(inputs)
        grads, losses = vmap(grad_and_value(self._loss), in_dims=dims)(params, buffers, *inputs)
        for k, model in enumerate(self.models):
            for name, p in model.named_parameters():
                p.grad = grads[name][k] if p.grad is None else p.grad.add_(grads[name][k])
        return losses.detach()
