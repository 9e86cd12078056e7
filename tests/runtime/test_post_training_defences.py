"""SuFi and Perturb-and-Recover on constructed cases: their losses equal the original code's
arithmetic, SuFi learns the labelled set through the image tower only, and PAR's augmentation
is seeded, one-sided noise plus a small erased square."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from xspec.builtin.par import PerturbAndRecover, augment, erase
from xspec.builtin.par import build as build_par
from xspec.builtin.sufi import SuFi
from xspec.builtin.sufi import build as build_sufi
from xspec.runtime import models
from xspec.runtime.defences import CleaningSetup
from xspec.runtime.objectives import mmcl
from xspec.runtime.pipeline import Normalizer
from xspec.runtime.seeding import generator
from xspec.runtime.train import TrainState, encode, train_step
from xspec.spec.tables.training import Training

ARCH = "xspec-vit-micro"
FASHION = {"format": "fashion_mnist", "split": "train", "size": 64}


def _setup(model, optimizer, seed=0):
    mean, std, _ = models.image_stats(model)
    data = SimpleNamespace(normalize=Normalizer.of(mean, std), tokenizer=models.tokenizer(ARCH))
    config = Training(objective="mmcl", batch_size=32, weight_decay=0.1)  # the node's typed config
    return CleaningSetup(model, data, optimizer, config, torch.device("cpu"), seed,
                         log=lambda message: None)


def _model(seed=0):
    torch.manual_seed(seed)
    return models.create(ARCH, "scratch", torch.device("cpu"), log=lambda m: None)


def _hooks(pieces):
    return SimpleNamespace(transform=pieces.transform, loss=pieces.loss)


def test_sufi_linear_head_loss_is_cross_entropy_on_the_image_features():
    """CleanCLIP src/evaluate.py:92-99,169,195: CE(linear(image features), label)."""
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pieces = build_sufi(SuFi(data=FASHION, head="linear"), _setup(model, optimizer))
    batch = next(iter(pieces.batches.batches(1)))
    head = [g for g in optimizer.param_groups if g.get("owner") == "sufi_weight"][0]["params"][0]
    bias = [g for g in optimizer.param_groups if g.get("owner") == "sufi_bias"][0]["params"][0]
    expected = F.cross_entropy(model.encode_image(batch["image"]) @ head.T + bias,
                               batch["label"])
    loss, parts, _ = pieces.loss(model, model, batch)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert set(parts) == {"sufi_ce"}
    assert pieces.batches.steps_per_epoch == 2  # 64 labelled images in batches of 32


def test_sufi_learns_the_labelled_set_through_the_image_tower_only():
    model = _model()
    text_before = {n: p.detach().clone() for n, p in model.named_parameters()
                   if not n.startswith("visual")}
    optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=3e-3, weight_decay=0.0)
    pieces = build_sufi(SuFi(data=FASHION), _setup(model, optimizer))
    cfg = Training(objective="mmcl", epochs=8, lr=3e-3, warmup_steps=0)
    state, total = TrainState(), 8 * pieces.batches.steps_per_epoch
    first = last = None
    for epoch in range(1, 9):
        for batch in pieces.batches.batches(epoch):
            losses = train_step(cfg, model, model, optimizer, batch, state, total,
                                torch.device("cpu"), hooks=_hooks(pieces))
            first = first if first is not None else float(losses["sufi_ce"])
            last = float(losses["sufi_ce"])
    assert last < first - 0.3
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in text_before.items())  # incl. logit_scale


def _par_batch(model):
    mean, std, size = models.image_stats(model)
    torch.manual_seed(1)
    images = Normalizer.of(mean, std)(torch.rand(8, 3, size, size))
    text = models.tokenizer(ARCH)([f"a photo of item {i}" for i in range(8)])
    return {"image": images, "text": text, "index": torch.arange(8)}


def test_par_loss_is_clip_loss_minus_the_thresholded_distances():
    """PerturbAndRecover losses.py:53-91 after one step away from the frozen model."""
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pieces = build_par(PerturbAndRecover(), _setup(model, optimizer))
    frozen = _model()
    cfg, state = Training(objective="mmcl", epochs=1, lr=1e-2, warmup_steps=0), TrainState()
    batch = _par_batch(model)
    train_step(cfg, model, model, optimizer, batch, state, 4, torch.device("cpu"),
               extra_terms=pieces.terms)  # the student moves away from the start
    with torch.no_grad():
        s = encode(model, batch, torch.device("cpu"))
        p = {"image": F.normalize(frozen.encode_image(batch["image"]), dim=-1),
             "text": F.normalize(frozen.encode_text(batch["text"]), dim=-1)}
        d = {k: ((s[k] - p[k]) ** 2).sum(dim=1).mean() for k in p}
        thr = {k: v if v <= 2.15 else torch.tensor(0.0) for k, v in d.items()}
        expected = mmcl(s, model.logit_scale.exp()) - 0.5 * (thr["image"] + thr["text"])
        term = pieces.terms[0]
        got = mmcl(s, model.logit_scale.exp()) + term.weight * term.fn(model, batch, s)
    assert float(d["image"]) > 0
    assert torch.allclose(got, expected, atol=1e-6)
    tight = build_par(PerturbAndRecover(threshold=1e-12), _setup(_model(), optimizer))
    assert float(tight.terms[0].fn(model, batch, s)) == 0.0  # past tau: switched off


def test_par_freezes_the_logit_scale_as_the_original():
    model = _model()
    before = float(model.logit_scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pieces = build_par(PerturbAndRecover(), _setup(model, optimizer))
    train_step(Training(objective="mmcl", epochs=1, lr=1e-2, warmup_steps=0), model, model, optimizer,
               _par_batch(model), TrainState(), 4, torch.device("cpu"), pieces.terms,
               hooks=_hooks(pieces))
    assert float(model.logit_scale) == before
    trained = _model()
    build_par(PerturbAndRecover(logit_scale="trained"), _setup(trained, optimizer))
    assert trained.logit_scale.requires_grad


def test_par_noise_is_one_sided_and_erasing_cuts_a_small_square():
    spec = PerturbAndRecover(noise_p=1.0, erase_p=1.0)
    images = torch.full((4, 3, 32, 32), 0.5)
    noisy = augment(images, [generator(0, "t", i) for i in range(4)], spec)
    assert bool((noisy >= images).all()) and bool((noisy > images).any())
    erased = erase(torch.ones(4, 3, 32, 32), [generator(0, "e", i) for i in range(4)], spec)
    zeros = (erased[:, 0] == 0).flatten(1).sum(1)
    assert all(z in (4, 9) for z in zeros.tolist())  # 0.5-1 % of 1024 px: a 2x2 or 3x3 square
    again = erase(torch.ones(4, 3, 32, 32), [generator(0, "e", i) for i in range(4)], spec)
    assert torch.equal(erased, again)


def test_par_transform_depends_on_epoch_and_index_only():
    model = _model()
    pieces = build_par(PerturbAndRecover(), _setup(model, torch.optim.AdamW(model.parameters())))
    batch = _par_batch(model)
    pieces.on_epoch_start(1)
    a, b = pieces.transform(batch)["image"], pieces.transform(batch)["image"]
    pieces.on_epoch_start(2)
    c = pieces.transform(batch)["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sufi_and_par_need_valid_fields():
    with pytest.raises(ValueError, match="erase_scale"):
        PerturbAndRecover(erase_scale=(0.02, 0.01))
    with pytest.raises(ValueError, match="head"):
        SuFi(data=FASHION, head="mlp")
