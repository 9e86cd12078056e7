"""The built-in node kinds, and shrink-and-perturb's node between selection and cleaning.

poison ──▶ pretrain ──▶ select ──▶ [shrink_perturb] ──▶ clean      [pseudo_labels] ──▶ clean
                              └──▶ [detect]  (scores the training pairs; xspec.compiler.detect)
select, clean ──▶ [decree]  (DECREE's trigger inversion per model; xspec.compiler.decree)
"""

from __future__ import annotations

from xspec.extend.registry import register_node_kind

STAGES = "xspec.runtime.stages"
CONFIGS = "xspec.compiler.configs"

register_node_kind("poison", order=0, stage=f"{STAGES}.poison:poison", label="poison manifest",
                   config=f"{CONFIGS}:poison_config")
register_node_kind("pretrain", order=10, stage=f"{STAGES}.pretrain:pretrain", trains=True,
                   label="pre-training", config=f"{CONFIGS}:pretrain_config")
register_node_kind("select", order=20, stage=f"{STAGES}.select:select",
                   label="checkpoint selection", config=f"{CONFIGS}:SelectConfig")
register_node_kind("detect", order=25, stage="xspec.runtime.detect:detect",
                   label="poison detection", config=f"{CONFIGS}:detect_config_now")
# DECREE back-propagates through the encoder for up to 1000 epochs: a GPU job like training.
register_node_kind("decree", order=55, stage="xspec.runtime.decree:decree", trains=True,
                   label="DECREE trigger inversion", config="xspec.compiler.decree:DecreeConfig")
register_node_kind("shrink_perturb", order=30, stage=f"{STAGES}.shrink_perturb:shrink_perturb",
                   label="shrink and perturb", config=f"{CONFIGS}:shrink_perturb_config")
register_node_kind("pseudo_labels", order=40, stage=f"{STAGES}.pseudo_labels:pseudo_labels",
                   label="pseudo-labels", config=f"{CONFIGS}:pseudo_labels_config")
register_node_kind("clean", order=50, stage=f"{STAGES}.clean:clean", trains=True,
                   label="cleaning", config=f"{CONFIGS}:clean_config")


def shrink_perturb_node(build, spec, value, start):
    """Cleaning starts from the best shrunk-and-perturbed copy of the selected checkpoint."""
    return build.add("shrink_perturb", {**dict(value), **build.shared(spec)}, (start,))
