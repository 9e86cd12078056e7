"""BadCLIP on the toy: against the toy stand-in for a clean CLIP (specs/toy/clip_stand_in.toml,
58 % zero-shot top-1 on Fashion-MNIST), the optimisation lowers its loss and the learned patch
makes the clean model call more non-target test images "bag" than random patches of the same
size do.

Measured while writing this (2 loaded cores): with the image-text term only, a 16-px patch (half
the 32-px image) goes from loss 3.14 to 2.75 in 20 epochs and reaches ASR 2.4 % against at most
0.3 % for five random patches. At the toy twins' 4-px patch the term barely moves (2.88 -> 2.87)
and the ASR stays at the random patches' (0.7 %): every caption of the optimisation pool is a
template naming "bag", so the InfoNCE among them is nearly flat, and a patch of 1.6 % of the
pixels cannot move this model's embeddings far. The triplet term (image_weight = 500) lowers its
loss too (574 -> 502) but drives the ASR to 0: it pushes patched images away from their own clean
embedding more than toward the natural "bag" images.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xspec.store.workspace import Workspace
from xspec.study import open_study, run_study

TOY = Path(__file__).resolve().parents[2] / "specs" / "toy"
FASHION = "/usr/share/datasets/fashion-mnist"


def _asr(model, normalize, classifier, images01, patch, target) -> float:
    from xspec.runtime.badclip import corners, patched

    size = images01.shape[-1]
    rows, cols = corners(list(range(len(images01))), "middle", patch.shape[-1], size, size, 0)
    with torch.no_grad():
        features = F.normalize(model.encode_image(normalize(patched(images01, patch, rows,
                                                                    cols))), dim=-1)
    return float(((features @ classifier).argmax(1) == target).float().mean())


@pytest.mark.slow
def test_badclip_patch_beats_random_patches_on_the_toy_stand_in(tmp_path):
    from xspec.builtin.badclip import BadClipTriggerConfig
    from xspec.runtime import models
    from xspec.runtime.badclip import Optimisation, optimise_patch
    from xspec.runtime.data import open_eval, open_pairs
    from xspec.runtime.evaluate import clip80_templates, zero_shot_classifier
    from xspec.runtime.handoffs import checkpoint_of
    from xspec.runtime.pipeline import Normalizer, to_unit
    from xspec.spec.classes import read_classes
    from xspec.store.workspace import RunDir

    workspace = Workspace(tmp_path / "ws")
    study = open_study(TOY / "clip_stand_in.toml")
    assert not run_study(study, workspace, "debug").failed
    (select,) = study.plan.of_kind("select")
    arch, path = checkpoint_of(RunDir(workspace.runs / select.run_name))
    device = torch.device("cpu")
    model = models.create(arch, {"path": path}, device, lambda m: None).eval()
    model.requires_grad_(False)
    mean, std, size = models.image_stats(model)
    normalize, tokenizer = Normalizer.of(mean, std), models.tokenizer(arch)
    classes = list(read_classes("fashion_mnist"))
    target = classes.index("bag")
    classifier = zero_shot_classifier(model, tokenizer, classes, clip80_templates(), device)
    test = open_eval({"format": "fashion_mnist", "path": FASHION, "split": "test",
                      "size": 1000}, size)
    others = [i for i in range(len(test.labels)) if test.labels[i] != target]
    images01 = to_unit(test.images.load(others)[1])

    train = {"format": "fashion_mnist", "path": FASHION, "split": "train", "size": 1024}
    cfg = BadClipTriggerConfig(
        surrogate={"path": path}, arch=arch, train=train, target="bag", size=16,
        location="middle", epochs=20, batch_size=16, lr=0.01, images=128, text_weight=1.0,
        image_weight=0.0, margin=1.0, seed=0)
    opt = Optimisation(cfg, model, normalize, tokenizer, open_pairs(train, size), device)
    stored, losses = optimise_patch(opt)
    assert losses[20] < losses[0] - 0.1, losses

    learned = _asr(model, normalize, classifier, images01, stored.float() / 255, target)
    random = [_asr(model, normalize, classifier, images01,
                   torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(s)), target)
              for s in range(5)]
    assert learned > 2 * max(random) and learned > 0.01, (learned, random)
    assert np.isfinite(learned)
