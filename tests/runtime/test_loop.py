"""The one epoch loop (`xspec.runtime.loop`): K members on shared batches step as each would
alone; a member whose weights or loss turn non-finite fails alone and the others finish."""

import torch

from xspec.runtime.loop import Trainee, train, train_epochs
from xspec.runtime.train import NonFiniteLoss, TrainState
from xspec.spec.tables.training import Training

from tiny_model import Batches, Overflowing, Tiny


def _trainee(seed: int, lr: float, optimizer=None) -> Trainee:
    torch.manual_seed(seed)
    model = Tiny()
    optimizer = optimizer(model) if optimizer else torch.optim.SGD(model.parameters(), lr=lr)
    return Trainee(Training(objective="mmcl", epochs=3, lr=lr, warmup_steps=0), model, optimizer)


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_members_trained_together_equal_each_trained_alone():
    alone = []
    for seed, lr in ((0, 0.1), (1, 0.05)):
        trainee, losses = _trainee(seed, lr), []
        train(trainee.cfg, trainee.model, Batches(), trainee.optimizer, TrainState(),
              lambda state, mean: losses.append(mean["loss"]), torch.device("cpu"))
        alone.append((_weights(trainee.model), losses))
    pack = [_trainee(0, 0.1), _trainee(1, 0.05)]
    losses = {id(t): [] for t in pack}
    train_epochs(pack, Batches(), torch.device("cpu"),
                 lambda ended: [losses[id(t)].append(t.losses()["loss"]) for t in ended])
    for trainee, (weights, trained) in zip(pack, alone):
        assert trainee.error is None and trainee.state.epoch == 3 and trainee.state.step == 6
        assert losses[id(trainee)] == trained and len(set(trained)) == 3
        assert all(torch.equal(a, b) for a, b in zip(_weights(trainee.model), weights))


def test_a_member_whose_weights_overflow_fails_alone_before_its_epoch_is_recorded():
    healthy = _trainee(1, 0.05)
    broken = _trainee(0, 0.1, lambda model: Overflowing(model, 4))  # the last step of epoch 2
    failed, ended = [], []
    broken.on_fail = failed.append
    train_epochs([broken, healthy], Batches(), torch.device("cpu"),
                 lambda done: ended.append([t is broken for t in done]))
    assert isinstance(broken.error, NonFiniteLoss) and failed == [broken.error]
    assert "non-finite at epoch 2, step 4" in str(broken.error)
    assert ended == [[True, False], [False], [False]]  # its epoch 2 was never recorded
    assert healthy.error is None and healthy.state.epoch == 3


def test_members_resumed_at_different_epochs_each_start_at_their_own():
    behind, ahead = _trainee(0, 0.1), _trainee(1, 0.1)
    ahead.state = TrainState(epoch=2, step=4)
    ended = []
    train_epochs([behind, ahead], Batches(), torch.device("cpu"),
                 lambda done: ended.append([(t is ahead, t.state.epoch) for t in done]))
    assert ended == [[(False, 1)], [(False, 2)], [(False, 3), (True, 3)]]
    assert behind.state.step == ahead.state.step == 6
