"""Run options that change how fast a model trains, not what it computes (within float
rounding): `run.compile` (torch.compile of the model's forward) and `run.grad_checkpointing`
(open_clip's activation recomputation in the transformer towers: less memory, ~30 % more
compute). Fused AdamW on CUDA is always on (xspec.runtime.optim).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from xspec.spec.tables.settings import RunSettings


def apply_run_options(model: torch.nn.Module, settings: RunSettings,
                      log: Callable[[str], None] = print) -> torch.nn.Module:
    """The same module, with its forward compiled and/or its towers checkpointing as `settings`
    (the study's [run] table) ask. `Module.compile` keeps the module's class and its state_dict
    keys, so checkpoints are the same files as without it."""
    if settings.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise TypeError(f"{type(model).__name__} has no set_grad_checkpointing")
        model.set_grad_checkpointing(True)
        log("run.grad_checkpointing: activations recomputed in the backward pass "
            "(transformer towers; a ModifiedResNet image tower has none)")
    if settings.compile:
        model.compile()
        log("run.compile: the model's forward is compiled by torch.compile at its first steps")
    return model
