"""A two-linear-layer CLIP stand-in, its batches, and an optimiser whose update overflows:
enough to drive the epoch loop (tests/runtime/test_divergence.py, test_loop.py,
test_defence_hooks.py; bench/reliability2.py) in milliseconds."""

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.image, self.text = nn.Linear(4, 8), nn.Linear(4, 8)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, image, text):
        return self.image(image), self.text(text)


class Batches:
    def __init__(self, steps_per_epoch: int = 2):
        self.steps_per_epoch = steps_per_epoch

    def batches(self, epoch, dist=None):
        g = torch.Generator().manual_seed(epoch)
        for _ in range(self.steps_per_epoch):
            yield {"image": torch.randn(4, 4, generator=g), "text": torch.randn(4, 4, generator=g),
                   "index": torch.arange(4)}


class Overflowing(torch.optim.SGD):
    """Its update at step `at` overflows one weight to inf, as a too-large learning rate does."""

    def __init__(self, model, at: int):
        super().__init__(model.parameters(), lr=0.1)
        self.weight, self.at, self.calls = model.image.weight, at, 0

    def step(self, closure=None):
        super().step(closure)
        self.calls += 1
        if self.calls == self.at:
            with torch.no_grad():
                self.weight.view(-1)[0] = float("inf")
