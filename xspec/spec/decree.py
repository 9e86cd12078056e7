"""`[decree]`: DECREE (Feng et al., CVPR 2023; github GiantSeaweed/DECREE), detection of a
backdoored image encoder by trigger inversion.

For each model of the study (the selected pre-trained models, the cleaned ones, or both) a
`decree` node searches for the smallest mask-and-patch trigger that makes the encoder embed
every image of a small clean shadow set alike (mean pairwise cosine > `threshold`). A backdoored
encoder has such a shortcut, so its trigger is small; its PL1-norm (the mask's L1 norm over the
largest possible, 3 x H x W) below `pl1_threshold` flags the model. The report compares the flags
with which models were trained on poisoned data (AUROC over the study's models).

```toml
[decree]              # the original's CLIP settings (run_decree.py:45, main.py:218-238)
shadow = 10_000       # images of data.eval (the original: 20 % of ImageNet val)
models = "both"       # "pretrained", "cleaned" or "both"
```
"""

from __future__ import annotations

from typing import Literal

from xspec.spec.base import Fraction, PositiveFloat, PositiveInt, XspecModel


class Decree(XspecModel):
    """DECREE trigger inversion against the image encoder of each model of the study; its
    inverted trigger's L1 norm and the detection decision per model."""

    models: Literal["pretrained", "cleaned", "both"] = "both"
    """Which models get a decree node: each selected pre-trained checkpoint, each cleaning run's
    last checkpoint, or both."""
    shadow: PositiveInt = 10_000
    """Images of data.eval the trigger is inverted on, drawn from the seed (the original samples
    20 % of ImageNet's 50,000 validation images, main.py:176)."""
    epochs: PositiveInt = 1000
    """At most this many passes over the shadow set; the search stops early once a trigger
    succeeds and its norm stopped shrinking (main.py:219,374-383)."""
    batch_size: PositiveInt = 32
    """run_decree.py:45 (CLIP)."""
    lr: PositiveFloat = 0.5
    """Adam's rate for the first 200 epochs, then 0.1, then 0.05 from epoch 500 (main.py:29-45;
    run_decree.py:45 gives 0.5 for CLIP)."""
    threshold: Fraction = 0.99
    """Mean pairwise cosine of the triggered shadow images' embeddings at which a trigger
    succeeds (main.py:400)."""
    mask_init: Literal["rand", "orc"] = "rand"
    """rand: mask and patch uniform in [0, 1] (run_decree.py:45); orc: a square mask of 1s from
    (24, 24) to (200, 200) at 224 px (main.py:107,150-156), scaled to the model's image size."""
    normalise: Literal["imagenet", "model"] = "imagenet"
    """imagenet: the original normalises with ImageNet's mean and std even for CLIP encoders
    (main.py:67-69,172); model: the model's own statistics."""
    pl1_threshold: Fraction = 0.1
    """A model whose trigger's PL1-norm (L1 of the mask over 3 x H x W) is below this is flagged
    as backdoored (the paper's decision; the code writes the L1 norm only)."""
