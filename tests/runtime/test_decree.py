"""DECREE's trigger inversion (xspec/runtime/decree.py) against a transcription of the original's
loop (GiantSeaweed/DECREE main.py:157-383, utils.py:6-20, commit 9c13b88), and on a constructed
case: an encoder poisoned with a known patch gets a small trigger, a clean one does not."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xspec.errors import DataError
from xspec.runtime.decree import IMAGENET, initial, invert

EPS = 1e-7


def original_cos_sim(mat_a):
    """utils.py:6-20, verbatim arithmetic."""
    ele_size = mat_a.shape[0]
    mat_a = F.normalize(mat_a, dim=-1)
    sim_matrix = torch.mm(mat_a, mat_a.t())
    sim_mask = (torch.ones_like(sim_matrix) - torch.eye(ele_size)).bool()
    sim_matrix = sim_matrix.masked_select(sim_mask).view(ele_size, -1)
    return torch.mean(sim_matrix)


def original_lr(epoch, lr):
    """main.py:29-45 with encoder_usage_info = 'CLIP'."""
    return lr if epoch < 200 else (0.1 if epoch < 500 else 0.05)


def original_decree(model, images_hwc, mask0, patch0_hwc, orders, batch_size, lr, thres, epochs):
    """main.py:157-383 for a CLIP encoder, the data loader replaced by the given orders and the
    per-image Normalize by the same arithmetic on the stacked batch. Returns (regular_best,
    epochs run, [(loss, cos, reg) means per epoch])."""
    mean = torch.tensor(IMAGENET[0], dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET[1], dtype=torch.float64).view(3, 1, 1)
    train_mask_2d = torch.arctanh((mask0 - 0.5) * (2 - EPS))
    train_patch = torch.arctanh((patch0_hwc - 0.5) * (2 - EPS))
    train_mask_2d.requires_grad = True
    train_patch.requires_grad = True
    optimizer = torch.optim.Adam(params=[train_mask_2d, train_patch], lr=lr, betas=(0.5, 0.9))
    init_loss_lambda = 1e-3
    loss_lambda = init_loss_lambda
    adaptor_lambda, patience, succ_threshold = 5.0, 5, thres
    regular_best = 1 / EPS
    early_stop_reg_best = regular_best
    early_stop_cnt = 0
    adaptor_up_cnt, adaptor_down_cnt = 0, 0
    lambda_set_cnt, lambda_set_patience = 0, 2 * patience
    lambda_min, early_stop_patience = 1e-7, 7 * patience
    history = []
    for e in range(epochs):
        for param_group in optimizer.param_groups:
            param_group['lr'] = original_lr(e, lr)
        loss_list = {'loss': [], 'cos': [], 'reg': []}
        order = orders(e)
        for start in range(0, len(order), batch_size):
            clean_x_batch = images_hwc[order[start:start + batch_size]]
            train_mask_3d = train_mask_2d.unsqueeze(2).repeat(1, 1, 3)
            train_mask_tanh = torch.tanh(train_mask_3d) / (2 - EPS) + 0.5
            train_patch_tanh = (torch.tanh(train_patch) / (2 - EPS) + 0.5) * 255
            train_mask_tanh = torch.clip(train_mask_tanh, min=0, max=1)
            train_patch_tanh = torch.clip(train_patch_tanh, min=0, max=255)
            bd_x_batch = (1 - train_mask_tanh) * clean_x_batch + train_mask_tanh * train_patch_tanh
            bd_x_batch = torch.clip(bd_x_batch, min=0, max=255)
            bd_input = torch.stack([(bd_x_batch[i].permute(2, 0, 1) / 255.0 - mean) / std
                                    for i in range(clean_x_batch.shape[0])])
            bd_out = model(bd_input.to(dtype=torch.float))
            loss_cos = (-original_cos_sim(bd_out))
            loss_reg = torch.sum(torch.abs(train_mask_tanh))
            loss = loss_cos + loss_reg * loss_lambda
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_list['loss'].append(loss)
            loss_list['cos'].append(loss_cos)
            loss_list['reg'].append(loss_reg)
            if (torch.abs(loss_cos) > succ_threshold) and (loss_reg < regular_best):
                regular_best = loss_reg
            if regular_best < 1 / EPS:
                if regular_best >= early_stop_reg_best:
                    early_stop_cnt += 1
                else:
                    early_stop_cnt = 0
            early_stop_reg_best = min(regular_best, early_stop_reg_best)
            if loss_lambda < lambda_min and (torch.abs(loss_cos) > succ_threshold):
                lambda_set_cnt += 1
                if lambda_set_cnt > lambda_set_patience:
                    loss_lambda = init_loss_lambda
                    adaptor_up_cnt, adaptor_down_cnt = 0, 0
            else:
                lambda_set_cnt = 0
            if (torch.abs(loss_cos) > succ_threshold):
                adaptor_up_cnt += 1
                adaptor_down_cnt = 0
            else:
                adaptor_down_cnt += 1
                adaptor_up_cnt = 0
            if (adaptor_up_cnt > patience):
                if loss_lambda < 1e5:
                    loss_lambda *= adaptor_lambda
                adaptor_up_cnt = 0
            elif (adaptor_down_cnt > patience):
                if loss_lambda >= lambda_min:
                    loss_lambda /= adaptor_lambda
                adaptor_down_cnt = 0
        loss_cos_e = torch.mean(torch.stack((loss_list['cos'])))
        history.append(tuple(float(torch.mean(torch.stack(loss_list[k])))
                             for k in ('loss', 'cos', 'reg')))
        if torch.abs(loss_cos_e) > succ_threshold and early_stop_cnt > early_stop_patience:
            return float(regular_best), e + 1, history
    return float(regular_best), epochs, history


class SmallEncoder(torch.nn.Module):
    """A fixed random linear encoder of the centred pixels (distinct images embed far apart);
    with `patch`, also a backdoor: images carrying that patch in the top-left corner embed at one
    fixed point whatever else they show."""

    def __init__(self, size, seed=0, patch=None):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(16, 3 * size * size, generator=gen))
        self.centre = ((0.5 - torch.tensor(IMAGENET[0])) / torch.tensor(IMAGENET[1])).view(3, 1, 1)
        self.patch = patch  # normalised [3, k, k] or None
        self.direction = torch.randn(16, generator=gen) * 100

    def forward(self, x):
        out = (x - self.centre).flatten(1) @ self.weight.t()
        if self.patch is not None:
            k = self.patch.shape[-1]
            gap = (x[:, :, :k, :k] - self.patch).abs().mean(dim=(1, 2, 3))
            present = torch.sigmoid((0.8 - gap) * 5).unsqueeze(1)  # ~1 with the patch pasted
            out = (1 - present) * out + present * self.direction
        return out


def shadow(n=12, size=12, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)


def settings(**kw):
    base = dict(epochs=40, batch_size=4, lr=0.5, threshold=0.9, mask_init="rand")
    return SimpleNamespace(**{**base, **kw})


def test_inversion_follows_the_originals_arithmetic():
    images, model = shadow(), SmallEncoder(12).eval().requires_grad_(False)
    cfg = settings()
    orders = lambda e: torch.randperm(len(images), generator=torch.Generator().manual_seed(e))
    got = invert(model, images, cfg, IMAGENET, seed=3, order=orders)
    mask0, patch0 = initial(images.shape[-1], "rand", 3)
    best, epochs, history = original_decree(
        model, images.permute(0, 2, 3, 1).contiguous(), mask0, patch0.permute(1, 2, 0),
        orders, cfg.batch_size, cfg.lr, cfg.threshold, cfg.epochs)
    assert got.epochs == epochs
    assert got.found and best < 1 / EPS  # a trigger succeeded, so the comparison means something
    assert got.l1 == pytest.approx(best, rel=1e-9)
    np.testing.assert_allclose([[h["loss"], h["cos"], h["reg"]] for h in got.history],
                               [[loss, -cos, reg] for loss, cos, reg in history], rtol=1e-6)
    assert got.pl1 == pytest.approx(best / (3 * 12 * 12))


def test_backdoored_encoder_gets_a_small_trigger_and_a_clean_one_does_not():
    images = shadow(n=16, size=16)
    known = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(7))
    normalised = (known - torch.tensor(IMAGENET[0]).view(3, 1, 1)) / torch.tensor(
        IMAGENET[1]).view(3, 1, 1)
    cfg = settings(epochs=150, batch_size=8, threshold=0.99)
    clean = invert(SmallEncoder(16).eval().requires_grad_(False), images, cfg, IMAGENET, seed=0)
    bad = invert(SmallEncoder(16, patch=normalised).eval().requires_grad_(False), images, cfg,
                 IMAGENET, seed=0)
    assert bad.found and bad.pl1 < 0.1, bad.pl1  # the paper's decision: flagged
    assert not clean.found or clean.pl1 > 0.1, clean.pl1
    assert bad.pl1 < clean.pl1 / 3
    # the recovered mask sits on the known patch's corner
    corner = bad.mask[:3, :3].sum() / bad.mask.sum()
    assert corner > 0.5, float(corner)


def test_a_single_shadow_image_is_refused():
    with pytest.raises(DataError, match="shadow set has 1 image"):
        invert(SmallEncoder(12), shadow(n=1), settings(), IMAGENET, seed=0)
