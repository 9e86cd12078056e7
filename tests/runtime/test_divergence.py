"""A model whose weights turn non-finite is never evaluated or saved: the node fails."""

import pytest
import torch
from torch import nn

from xspec.runtime.train import NonFiniteLoss, TrainState, train
from xspec.spec.tables.training import Training


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.image, self.text = nn.Linear(4, 8), nn.Linear(4, 8)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, image, text):
        return self.image(image), self.text(text)


class Batches:
    steps_per_epoch = 2

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


@pytest.mark.parametrize("at, epochs_ended", [(2, 0), (4, 1)])
def test_weights_that_overflow_on_an_epochs_last_step_fail_before_its_evaluation(at, epochs_ended):
    torch.manual_seed(0)
    model = Tiny()
    ended = []
    cfg = Training(objective="mmcl", epochs=3, lr=0.1, warmup_steps=0)
    with pytest.raises(NonFiniteLoss, match=rf"parameters became non-finite at epoch "
                                            rf"{epochs_ended + 1}, step {at} \(1 tensor\(s\), "
                                            r"e\.g\. image\.weight\)"):
        train(cfg, model, Batches(), Overflowing(model, at), TrainState(),
              lambda state, losses: ended.append(state.epoch), torch.device("cpu"))
    assert ended == list(range(1, epochs_ended + 1))
