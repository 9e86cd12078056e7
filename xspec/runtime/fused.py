"""Fused packing (`[run] fuse = true` with `pack = K`): K cleaning models of one architecture
stepped as one stacked model.

`[run] pack = K` (xspec/runtime/packed.py) steps the members one after the other: K forward and
backward passes of a small model, each too small to fill a GPU. Here the members' parameters
are stacked (`torch.func.stack_module_state`) and one `vmap` of `grad_and_value` over
`functional_call` computes every member's loss and gradients in batched kernels; the gradients
are written to each member's own `.grad`, so each member's own optimiser (its learning rate,
weight decay, schedule) then steps as before. Members may differ in what a pack lets them differ
in (the config fields marked `PerMember`): the loss weights enter the vmapped function as
a per-member tensor. Arithmetic per member is the sequential one up to float reassociation
(tests/runtime/test_fused.py), so metrics equal unpacked ones within float tolerance, not bit
for bit.

A packed job with `run.fuse` (xspec.runtime.packed) passes `FusedStep` to the epoch loop's step
seam (`xspec.runtime.fit.train_members(step=...)`, `xspec.runtime.loop.train_epochs`).

Attention runs through SDPA's math backend inside the vmapped pass: torch has no batching rule
for the CPU flash-attention backward, which would loop over the members one by one.

Refused with a `FuseError` (the job's members fail with it, nothing trains): members whose
architectures differ (parameter names, shapes or dtypes), a defence that changes batches, adds
loss terms or replaces the objective, the original code's fp16 GradScaler precision, more than
one rank, and dropout or any random op in the forward pass (`vmap` refuses them).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from xspec.errors import XspecError
from xspec.runtime.objectives import LOSSES, info_nce, parts
from xspec.runtime.optim import set_lr
from xspec.runtime.precision import ORIGINAL, Precision


class FuseError(XspecError):
    pass


def mmcl_of(outputs) -> torch.Tensor:
    """CLIP's loss from an open_clip forward's (image, text, logit_scale) output."""
    image, text, scale = _unpack(outputs)
    return info_nce(image, text, scale)


def _unpack(outputs):
    if isinstance(outputs, dict):
        return outputs["image_features"], outputs["text_features"], outputs["logit_scale"]
    return outputs[:3]


def architecture(model: torch.nn.Module) -> list:
    return [type(model).__name__] + [(n, tuple(p.shape), p.dtype)
                                     for n, p in model.named_parameters()]


class FusedPack:
    """K models of one architecture whose gradients come from one vmapped pass.

    `loss_of(outputs, *per_member)` returns (loss, parts) or a loss; `per_member` tensors
    passed to `backward` carry one row per member."""

    def __init__(self, models: Sequence[torch.nn.Module], loss_of: Callable = mmcl_of,
                 forward: Callable = contextlib.nullcontext):
        shapes = [architecture(m) for m in models]
        differ = [k for k, s in enumerate(shapes) if s != shapes[0]]
        if differ:
            raise FuseError(f"run.fuse: member {differ[0]} has another architecture than member "
                            f"0 ({_difference(shapes[0], shapes[differ[0]])}); fused packing "
                            "steps members of one architecture: set run.fuse = false")
        self.models, self.loss_of, self.forward = list(models), loss_of, forward
        self._skeleton = copy.deepcopy(models[0]).to("meta")

    def _loss(self, params, buffers, per_member, inputs):
        with self.forward():  # autocast for the forward pass and loss, not the backward
            out = self.loss_of(functional_call(self._skeleton, (params, buffers), inputs),
                               *per_member)
        return out if isinstance(out, tuple) else (out, {})

    def backward(self, *inputs: torch.Tensor, per_member: tuple = ()
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every member's loss on the same inputs (a [K] tensor) and its parts ([K] each);
        adds each member's gradients to its parameters' `.grad`."""
        self._skeleton.train(self.models[0].training)
        params, buffers = stack_module_state(self.models)
        fn = vmap(grad_and_value(self._loss, has_aux=True), in_dims=(0, 0, 0, None))
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            grads, (losses, loss_parts) = fn(params, buffers, tuple(per_member), inputs)
        with torch.no_grad():
            for k, model in enumerate(self.models):
                for name, p in model.named_parameters():
                    p.grad = grads[name][k] if p.grad is None else p.grad.add_(grads[name][k])
                for name, b in model.named_buffers():  # BatchNorm's running statistics
                    b.copy_(buffers[name][k])
        return losses.detach(), {n: v.detach() for n, v in loss_parts.items()}


def _difference(a: list, b: list) -> str:
    if a[0] != b[0]:
        return f"{b[0]} vs {a[0]}"
    for x, y in zip(a[1:], b[1:]):
        if x != y:
            return f"{y[0]} {list(y[1])} vs {x[0]} {list(x[1])}"
    return f"{len(b) - 1} vs {len(a) - 1} parameter tensors"


def objective_loss(objective: str, sizes: dict[str, list[int]]) -> Callable:
    """loss_of(outputs, weights) for `train_step`'s objective: the image and text views were
    stacked in one forward call (as `xspec.runtime.train.encode`), `weights` holds one weight
    per part of the objective, in `parts(objective)` order."""
    names = parts(objective)

    def loss_of(outputs, weights):
        image, text, scale = _unpack(outputs)
        features = {}
        for stacked, views in ((image, sizes["image"]), (text, sizes["text"])):
            chunks = stacked.split([n for _, n in views])
            features.update({name: F.normalize(c, dim=-1) for (name, _), c in zip(views, chunks)})
        values = {name: LOSSES[name](features, scale) for name in names}
        total = sum(weights[i] * values[name] for i, name in enumerate(names))
        return total, values

    return loss_of


def check_fusable(trainees: Sequence, dist) -> None:
    """Refuse what one vmapped pass cannot compute as each member's own step."""
    if dist.world > 1:
        raise FuseError("run.fuse: fused packing runs in one process; it does not combine with "
                        "several ranks (--nodes or tasks per node)")
    for k, t in enumerate(trainees):
        hooks = t.hooks
        if hooks is not None and (t.terms or any(getattr(hooks, a, None) is not None for a in
                                                 ("transform", "loss", "before_step"))):
            raise FuseError(f"run.fuse: member {k} has a defence that changes its batches, "
                            "steps or loss; only plain cleaning objectives fuse: set "
                            "run.fuse = false")
        if t.cfg.precision == ORIGINAL:
            raise FuseError(f"run.fuse: precision {ORIGINAL!r} keeps a GradScaler per member; "
                            "use bf16 or fp32, or set run.fuse = false")
    objectives = {t.cfg.objective for t in trainees}
    if len(objectives) > 1:
        raise FuseError(f"run.fuse: the members' objectives differ ({sorted(objectives)})")


def scheduled_lr(cfg, step: int, total_steps: int) -> float:
    from xspec.runtime.train import scheduled_lr as lr_of

    return lr_of(cfg, step, total_steps)


class FusedStep:
    """The epoch loop's step (`xspec.runtime.loop.step_each`'s signature) for fused packing:
    each trainee's learning rate for its step, one vmapped forward and backward for all, then
    each trainee's own optimiser step, logit-scale clamp and step count. A trainee whose loss
    is not finite fails alone (its optimiser does not step), as in `train_step`."""

    def __init__(self):
        self._packs: dict[tuple, FusedPack] = {}

    def __call__(self, trainees: list, batch: dict, steps_per_epoch: int,
                 device: torch.device, dist) -> list:
        check_fusable(trainees, dist)
        first = trainees[0]
        for t in trainees:
            set_lr(t.optimizer, scheduled_lr(t.cfg, t.state.step, t.cfg.epochs * steps_per_epoch))
            if t.state.precision is None:
                t.state.precision = Precision(t.cfg.precision, device.type)
            t.optimizer.zero_grad(set_to_none=True)
        stacks, sizes = {}, {}
        for modality in ("image", "text"):
            names = [k for k in (modality, f"{modality}_aug") if k in batch]
            sizes[modality] = [(n, len(batch[n])) for n in names]
            stacks[modality] = torch.cat([batch[n] for n in names]).to(device, non_blocking=True)
        names = parts(first.cfg.objective)
        weights = torch.tensor([[t.cfg.weights.get(n, 1.0) for n in names] for t in trainees],
                               dtype=torch.float32, device=device)
        pack = self._pack(trainees, first.cfg.objective, sizes)
        losses, loss_parts = pack.backward(stacks["image"], stacks["text"], per_member=(weights,))
        alive = []
        for k, t in enumerate(trainees):
            try:
                _finish(t, losses[k], {n: v[k] for n, v in loss_parts.items()})
            except Exception as exc:  # noqa: BLE001 - this member's failure, as step_each
                t.fail(exc)
            else:
                alive.append(t)
        return alive

    def _pack(self, trainees: list, objective: str, sizes: dict) -> FusedPack:
        key = (tuple(id(t.model) for t in trainees), objective, repr(sizes))
        if key not in self._packs:
            self._packs = {key: FusedPack([t.model for t in trainees],
                                          objective_loss(objective, sizes),
                                          trainees[0].state.precision.forward)}
        return self._packs[key]


def _finish(trainee, loss: torch.Tensor, loss_parts: dict) -> None:
    from xspec.runtime.train import NonFiniteLoss

    state = trainee.state
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"loss is {loss.item()} at epoch {state.epoch + 1}, step {state.step}")
    trainee.optimizer.step()
    with torch.no_grad():
        trainee.model.logit_scale.clamp_(0, trainee.cfg.logit_scale_max)
    state.step += 1
    trainee.add({"loss": loss, **loss_parts})
    if trainee.progress is not None:
        trainee.progress(state)
