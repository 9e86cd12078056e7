"""A model whose weights turn non-finite is never evaluated or saved: the node fails."""

import pytest
import torch

from xspec.runtime.loop import train
from xspec.runtime.train import NonFiniteLoss, TrainState
from xspec.spec.tables.training import Training

from tiny_model import Batches, Overflowing, Tiny


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
