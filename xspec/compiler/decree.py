"""The decree node: DECREE's trigger inversion against one model of the study.

poison ──▶ pretrain ──▶ select ──▶ clean
                          └──▶ decree     └──▶ decree      (`[decree] models`)

Its config holds the `[decree]` settings, the evaluation set the shadow images come from, the
kind of node whose checkpoint it inverts and DECREE's version, so changing any of them (and only
them) re-runs it. The runtime half is `xspec.runtime.decree`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from xspec.spec.base import EVAL, Seed
from xspec.spec.decree import Decree

VERSION = "1"  # bump when the inversion's behaviour changes for the same settings


class DecreeConfig(Decree):
    """A decree node: the `[decree]` settings plus what the node reads."""

    input: Literal["select", "clean"]
    """The dependency whose checkpoint is inverted: a select node's choice or a cleaning run's
    last epoch."""
    source: Annotated[dict[str, Any], EVAL]
    """data.eval's table: the shadow images are drawn from it."""
    seed: Seed
    plugins: dict[str, str] = {}


def decree_nodes(build, spec, select, cleaned) -> list:
    """The decree nodes of one variant: on its selected pre-trained model and/or its cleaned
    model, as `[decree] models` says; none without a `[decree]` table."""
    if spec.decree is None:
        return []
    wanted = {"pretrained": ("select",), "cleaned": ("clean",),
              "both": ("select", "clean")}[spec.decree.models]
    settings = spec.decree.model_dump(mode="json")
    out = []
    for kind, model in (("select", select), ("clean", cleaned)):
        if kind not in wanted or model is None:
            continue
        config = {**settings, "input": kind, "source": spec.data.eval.model_dump(mode="json"),
                  "seed": spec.study.seed, "plugins": {"detector:decree": VERSION}}
        out.append(build.add("decree", config, (model,)))
    return out

