"""`[attack] kind = "badclip"`: BadCLIP (Liang et al., CVPR 2024; github LiangSiyuan21/BadCLIP).

A patch optimised against a clean CLIP (`surrogate`: a checkpoint file, or another study's model
`{ study = "clip.toml", node = "select" }`) so that images carrying it embed near the target's
text (the original's `nature` term: CLIP's InfoNCE between patched images and their own captions,
on pairs whose caption names the target; `src/embeding_optimize_patch.py:108-126,333-345`) and,
with `image_weight > 0`, near natural target images and away from their own clean embedding
(the `pos`/`neg` triplet term, `:137-167`). The optimisation is its own node kind,
`badclip_trigger`, upstream of poisoning: content-addressed and cached like any node. Poisoning
then pastes the learned patch, as BadNet pastes its noise, on `poisons` pairs whose captions
become target templates (`backdoor/create_backdoor_data.py`).

The spec side only: the torch half is `xspec.runtime.badclip`. docs/FIDELITY.md has the rows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from xspec.errors import CompileError
from xspec.extend import (
    NonNegativeFloat, PositiveFloat, PositiveInt, XspecModel,
    register_attack,
    register_node_kind,
)
from xspec.spec.base import TRAIN, Seed
from xspec.spec.schema import StudyOutput
from xspec.spec.tables.attacks import Targeted

RUNTIME = "xspec.runtime.badclip"


@register_attack(f"{RUNTIME}:BadClipAttack", version="1",
                 upstream="xspec.builtin.badclip:trigger_node")
class BadClip(Targeted):
    kind: Literal["badclip"]
    surrogate: str | StudyOutput
    """The clean CLIP the patch is optimised against: a checkpoint file of `model.arch`, or
    another study's model ({ study = "clip.toml", node = "select" })."""
    size: PositiveInt = 16
    """Patch side in pixels (the original: 16 at 224 px)."""
    location: Literal["middle", "random"] = "middle"
    """middle: the image centre, as the original optimises and poisons it."""
    epochs: PositiveInt = 50
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    """Adam (torch defaults otherwise), as the original."""
    images: PositiveInt = 10_000
    """Pairs of data.train whose caption names the target that the patch is optimised on (the
    original's cc3m_natural_10K: 10,000 CC3M pairs naming 'banana')."""
    text_weight: NonNegativeFloat = 1.0
    """Weight of the image-text term (InfoNCE of patched images against their captions)."""
    image_weight: NonNegativeFloat = 0.0
    """Weight of the triplet term (anchor: patched image, positive: a natural target image,
    negative: the clean image); the original's `..._pos_neg_...` runs weigh it 500."""
    margin: PositiveFloat = 1.0
    trigger_node: str | None = None
    """Set by the compiler: the id of the badclip_trigger node whose patch poisoning uses.
    Leave it out."""


class BadClipTriggerConfig(XspecModel):
    """A badclip_trigger node: what the optimisation reads and its settings."""

    surrogate: dict[str, Any]
    """{"input": kind} (a dependency's checkpoint) or a file's fingerprint {"path", ...}."""
    arch: str | None
    train: Annotated[dict[str, Any], TRAIN]
    target: str
    size: PositiveInt
    location: Literal["middle", "random"]
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    images: PositiveInt
    text_weight: NonNegativeFloat
    image_weight: NonNegativeFloat
    margin: PositiveFloat
    seed: Seed
    plugins: dict[str, str] = {}


def trigger_node(build, spec) -> tuple[Any, list]:
    """Compiler hook: the badclip_trigger node of this spec's attack, and the attack naming it."""
    attack = spec.attack
    settings = attack.model_dump(mode="json", include={
        "target", "size", "location", "epochs", "batch_size", "lr", "images", "text_weight",
        "image_weight", "margin"})
    inputs = {}
    if isinstance(attack.surrogate, StudyOutput):
        source, label = build.input(attack.surrogate, "attack.surrogate")
        surrogate, arch = {"input": source.kind}, None
        inputs = {"attack.surrogate": (source, label)}
    else:
        if spec.model is None:
            raise CompileError("attack.surrogate: a checkpoint file needs [model] arch; name "
                               "another study's model ({ study, node }) instead")
        surrogate = build.fingerprint(attack.surrogate, "attack.surrogate")
        arch = spec.model.arch
    config = {"surrogate": surrogate, "arch": arch, "train": spec.data.train.model_dump(
        mode="json"), "seed": spec.study.seed, "plugins": {"attack:badclip": "1"}, **settings}
    node = build.add("badclip_trigger", config, (), inputs)
    return attack.model_copy(update={"trigger_node": node.id}), [node]


register_node_kind("badclip_trigger", order=-5, stage=f"{RUNTIME}:optimise",
                   label="BadCLIP trigger optimisation",
                   config="xspec.builtin.badclip:BadClipTriggerConfig")
