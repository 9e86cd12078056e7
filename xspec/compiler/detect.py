"""The detect node: downstream of a selected pre-trained model, it scores every training pair
with each detector that `[detect]` turns on and compares the scores with the poison manifest.

poison ──▶ pretrain ──▶ select ──▶ detect ──▶ [pretrain ──▶ select]  (`[detect.retrain]`)
   └────────────────────────────────▲  (the manifest is the ground truth)

Detect-then-retrain reuses the pretrain node kind: the chain's pre-training config plus
`drop` (detector, share), downstream of the detect node whose scores decide, so its id moves
with the detectors' and the first model's.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import create_model

from xspec.errors import CompileError
from xspec.extend.registry import DETECTORS, POLICIES
from xspec.spec.policies import parse_policy
from xspec.spec.base import TRAIN, OmitAtDefault, PositiveInt, Seed, XspecModel


class Detectors(XspecModel):
    """One optional field per registered detector (its settings model); those that are off stay
    None, out of the id. Iterating gives (name, settings) of the ones that are on."""

    def on(self) -> dict[str, XspecModel]:
        return {name: value for name, value in self if value is not None}


class DetectConfig(XspecModel):
    detectors: Any
    batch_size: PositiveInt
    train: Annotated[Any, TRAIN]
    seed: Seed
    plugins: dict[str, str] = {}
    """Always in the id (detect ids were made with it)."""


def detect_config(pairs) -> type[DetectConfig]:
    """The detect node's config for the registered detectors, attacks and pair sources."""
    detectors = create_model("Detectors", __base__=Detectors, **{
        d.name: (Annotated[d.spec | None, OmitAtDefault], None) for d in DETECTORS})
    return create_model("DetectConfig", __base__=DetectConfig, detectors=(detectors, ...),
                        train=(Annotated[pairs, TRAIN], ...))


def detect_node(build, spec, chain, select):
    """The detect node of one pre-training chain; every detector's version is in its id."""
    chosen = spec.detect.detectors()
    shared = build.shared(spec)
    versions = {**shared.get("plugins", {}),
                **{f"detector:{n}": DETECTORS.get(n).version for n in chosen
                   if DETECTORS.get(n).version}}
    config = {"detectors": chosen,
              "batch_size": spec.detect.batch_size, "train": chain.pretrain.config.train,
              "seed": shared["seed"],
              "plugins": dict(sorted(versions.items()))}
    detect = build.add("detect", config, (select, chain.poison))
    if spec.detect.retrain is not None:
        retrain_nodes(build, spec, chain, detect)
    return detect


def retrain_nodes(build, spec, chain, detect):
    """The pretrain node without the top-scored pairs, and its select node."""
    if len(chain.pretrain.deps) != 1:
        raise CompileError("detect.retrain: pre-training that starts from another study's "
                           "model (model.init = { study, node }) cannot be retrained yet")
    policy = parse_policy(spec.pretrain.select)
    if policy.reference is not None:
        raise CompileError(f"detect.retrain: pretrain.select = '{spec.pretrain.select}' "
                           "matches another run's accuracy; the retrained run needs a policy "
                           "of its own (best_accuracy, final, epoch(N))")
    config = chain.pretrain.config.model_copy(
        update={"drop": spec.detect.retrain, "save_optimizer": False})
    # The detect node as an input: in the id and the run order, its lineage not merged.
    retrained = build.add("pretrain", config, (chain.poison,),
                          {"pretrain.drop.scores": (detect, detect.run_name)})
    version = POLICIES.get(policy.name).version
    versions = {"plugins": {f"policy:{policy.name}": version}} if version else {}
    build.add("select", {"policy": spec.pretrain.select, **versions}, (retrained,))
    return retrained
