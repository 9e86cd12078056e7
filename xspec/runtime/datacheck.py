"""`xspec data check`: scan a study's datasets before any job is submitted.

Counts rows, missing and undecodable images, empty and over-long captions, the evaluation set's
class coverage, and how many training captions already name the attack target (what a
label-consistent attack needs). Problems that would break a run are `fatal`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from xspec.errors import DataError
from xspec.runtime.attacks.patch import target_pattern
from xspec.runtime.data import FileImages, iterate, open_eval, open_pairs


@dataclass
class Finding:
    dataset: str
    facts: dict = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _scan_images(images, batch: int = 256) -> tuple[int, list[str]]:
    """(readable count, paths of unreadable images)."""
    if not isinstance(images, FileImages):
        return len(images), []
    skipped: set[int] = set()
    chunks = [list(range(i, min(i + batch, len(images)))) for i in range(0, len(images), batch)]
    for _ in iterate(images, chunks, skipped=skipped):
        pass
    return len(images) - len(skipped), [images.paths[i] for i in sorted(skipped)]


def _bad_share(finding: Finding, bad: int, total: int, data_cfg) -> None:
    """What the run would refuse: any bad image under on_bad_image = "fail", else more than
    max_bad_fraction of the set (the limit `xspec.runtime.fit` enforces)."""
    if data_cfg is None or not bad:
        return
    if data_cfg.on_bad_image == "fail":
        finding.fatal.append(f"{bad} unreadable image(s) and data.on_bad_image = 'fail'")
    elif bad > data_cfg.max_bad_fraction * total:
        finding.fatal.append(f"{bad} of {total} images are unreadable, more than "
                             f"data.max_bad_fraction = {data_cfg.max_bad_fraction}")


def check_pairs(name: str, cfg: dict, context_length: int, target: str | None,
                data_cfg=None) -> Finding:
    finding = Finding(name)
    pairs = open_pairs(cfg, size=8)
    ok, bad = _scan_images(pairs.images)
    _bad_share(finding, len(bad), len(pairs.captions), data_cfg)
    lengths = [len(c.split()) for c in pairs.captions]
    finding.facts.update(rows=len(pairs.captions), readable_images=ok, bad_images=len(bad),
                         longest_caption_words=max(lengths, default=0))
    if bad:
        finding.warnings.append(f"{len(bad)} missing or undecodable image(s), e.g. {bad[0]}")
    if ok == 0:
        finding.fatal.append("no readable image")
    incomplete = getattr(pairs.images, "incomplete", 0)
    if incomplete:
        finding.warnings.append(f"{incomplete} shard sample(s) without an image or a caption "
                                "are left out")
    too_long = sum(n > context_length - 2 for n in lengths)
    if too_long:
        finding.warnings.append(f"{too_long} caption(s) longer than the model's context of "
                                f"{context_length} tokens will be truncated")
    if target:
        pattern = target_pattern(target)
        finding.facts["captions_naming_target"] = sum(bool(pattern.search(c))
                                                      for c in pairs.captions)
    return finding


def check_eval(cfg: dict, target: str | None, data_cfg=None) -> Finding:
    finding = Finding("eval")
    try:
        data = open_eval(cfg, size=8)
    except DataError as exc:  # e.g. a folder that matches no class
        finding.fatal.append(str(exc))
        return finding
    ok, bad = _scan_images(data.images)
    _bad_share(finding, len(bad), len(data.labels), data_cfg)
    counts = Counter(np.asarray(data.labels).tolist())
    missing = [data.classes[i] for i in range(len(data.classes)) if i not in counts]
    finding.facts.update(rows=len(data.labels), readable_images=ok, bad_images=len(bad),
                         classes=len(data.classes), classes_present=len(counts))
    if bad:
        finding.warnings.append(f"{len(bad)} missing or undecodable image(s), e.g. {bad[0]}")
    if ok == 0:
        finding.fatal.append("no readable image")
    if missing:
        finding.warnings.append(f"{len(missing)} class(es) have no image, e.g. {missing[0]}")
    if target and target in data.classes:
        non_target = int(sum(c for label, c in counts.items()
                             if data.classes[label] != target))
        finding.facts["asr_images"] = non_target
        if non_target == 0:
            finding.fatal.append(f"every image is of the target class {target!r}: ASR undefined")
    return finding


def check_study(spec) -> list[Finding]:
    """Scan the training, cleaning and evaluation sets of a validated spec."""
    from xspec.runtime.models import resolve

    import open_clip

    arch = spec.model.arch if spec.model else "RN50"  # clean.start: the text tower's CLIP default
    context = open_clip.get_model_config(resolve(arch)) or {}
    context_length = context.get("text_cfg", {}).get("context_length", 77)
    target = getattr(spec.attack, "target", None)
    findings = [check_pairs("train", spec.data.train.model_dump(mode="json"), context_length,
                            target, spec.data)]
    source = spec.data.clean.source
    if source != "train":
        findings.append(check_pairs("clean", source.model_dump(mode="json"), context_length, None,
                                    spec.data))
    elif spec.clean is not None:
        rows = findings[0].facts["rows"]
        needed = spec.data.clean.size + getattr(spec.attack, "poisons", 0)
        if spec.data.clean.overlap == "disjoint" and needed > rows:
            findings[0].fatal.append(f"data.clean.size {spec.data.clean.size} + the poisoned "
                                     f"pairs exceed the {rows} training pairs")
    findings.append(check_eval(spec.data.eval.model_dump(mode="json"), target, spec.data))
    if spec.attack.kind == "label_consistent":
        named = findings[0].facts.get("captions_naming_target", 0)
        if named < spec.attack.poisons:
            findings[0].warnings.append(f"label_consistent wants {spec.attack.poisons} poisons "
                                        f"but only {named} captions name {target!r}")
    return findings
