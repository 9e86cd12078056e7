"""Two gloo processes, each with half the batch, give the loss and gradients of one process on
the whole batch: features are gathered with autograd and DDP averages the gradients."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from xspec.runtime import models
from xspec.runtime.distributed import Dist, wrap
from xspec.runtime.objectives import total_loss
from xspec.runtime.train import encode
from xspec.spec.tables.settings import RunSettings

BATCH = 8


def _batch():
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(BATCH, 3, 16, 16, generator=g),
            "text": torch.randint(1, 400, (BATCH, 16), generator=g),
            "image_aug": torch.randn(BATCH, 3, 16, 16, generator=g),
            "text_aug": torch.randint(1, 400, (BATCH, 16), generator=g)}


def _model():
    torch.manual_seed(0)
    return models.create("xspec-vit-micro", "scratch", torch.device("cpu"))


def _loss_and_grads(model, net, batch, dist):
    features = encode(net, batch, torch.device("cpu"), dist)
    loss, _ = total_loss("mmcl+ssl", {"mmcl": 1.0, "ssl": 1.0}, features, model.logit_scale.exp())
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.grad is not None}


def _worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    dist = Dist(rank, 2)
    model = _model()
    shard = {k: v[rank * BATCH // 2:(rank + 1) * BATCH // 2] for k, v in _batch().items()}
    loss, grads = _loss_and_grads(model, wrap(model, dist, torch.device("cpu")), shard, dist)
    out[rank] = (loss, grads)
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_match_one_process_on_the_whole_batch():
    model = _model()
    loss, grads = _loss_and_grads(model, model, _batch(), Dist())
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
        results = dict(out)
    for rank in (0, 1):
        rank_loss, rank_grads = results[rank]
        assert rank_loss == pytest.approx(loss, rel=1e-5)
        assert rank_grads.keys() == grads.keys()
        for name, grad in grads.items():
            assert torch.allclose(rank_grads[name], grad, atol=1e-5, rtol=1e-4), name


EVAL_CFG = {"source": {"format": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
                       "split": "test", "size": 100}, "metrics": ["top1", "top5", "asr"]}
EVAL_ATTACK = {"kind": "badnet", "target": "bag", "poisons": 1,
               "trigger": {"size": 4, "pattern": "gaussian_per_image", "location": "random"}}


def _scores(dist):
    from xspec.runtime.attacks import make_attack
    from xspec.runtime.evaluator import Evaluator
    from xspec.runtime.pipeline import Normalizer

    model = _model()
    mean, std, size = models.image_stats(model)
    evaluator = Evaluator(EVAL_CFG, make_attack(EVAL_ATTACK, 0), models.tokenizer("xspec-vit-micro"),
                          Normalizer.of(mean, std), size, torch.device("cpu"),
                          RunSettings(eval_batch_size=16, workers=0))
    return evaluator(model, dist)


def _eval_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    out[rank] = _scores(Dist(rank, 2))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_share_the_evaluation_and_report_one_process_metrics():
    """7 batches of 16: rank 0 scores 4, rank 1 scores 3; the summed counts are exact."""
    alone = _scores(Dist())
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_eval_worker, args=(_free_port(), out), nprocs=2, join=True)
        results = dict(out)
    assert alone["top1"][1] == 100 and alone["asr"][1] > 0
    assert results[0] == results[1] == alone
