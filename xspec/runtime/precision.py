"""Numeric precision of a training step (`[pretrain]` / `[clean]` `precision`).

- "bf16": forward pass and loss under bf16 autocast on CUDA; fp32 on the CPU (xspec's default).
- "fp32": everything in fp32.
- "fp32-forward+fp16-loss": the original code's scheme (attack-cleanclip `src/train.py:299-310`):
  the model's forward pass in fp32, only the loss under fp16 autocast, the backward pass and the
  optimiser step through a `GradScaler` inside the same autocast block (a step whose
  gradients overflow is skipped and the scale lowered, as `torch.cuda.amp.GradScaler` does
  there). On the CPU the same arithmetic runs under CPU fp16 autocast, which is what the
  tests compare.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

PRECISIONS = ("bf16", "fp32", "fp32-forward+fp16-loss")
ORIGINAL = "fp32-forward+fp16-loss"


@dataclass
class Precision:
    name: str = "bf16"
    device_type: str = "cpu"
    scaler: object | None = None

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"precision: unknown value '{self.name}'; allowed: "
                             f"{', '.join(PRECISIONS)}")
        if self.name == ORIGINAL and self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.device_type)

    def forward(self):
        """The context the model's forward pass runs in."""
        if self.name == "bf16" and self.device_type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def loss(self):
        """The context the loss (and a defence's extra terms) is computed in."""
        if self.name == ORIGINAL:
            return torch.autocast(self.device_type, dtype=torch.float16)
        return self.forward()

    def step(self, loss: torch.Tensor, optimizer) -> None:
        """Backward pass and optimiser step (gradients already zeroed)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        with self.loss():  # as the original: backward and step inside the autocast block, which
            self.scaler.scale(loss).backward()  # makes parts of the backward pass fp16 too
            self.scaler.step(optimizer)
        self.scaler.update()
