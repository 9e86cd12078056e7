"""An evaluation set as one folder of images per class; labels from the folder names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xspec.errors import DataError
from xspec.runtime.data import EvalSet, FileImages, checked_labels
from xspec.spec.classes import folder_labels, read_classes


def open_eval(cfg: dict, size: int, on_bad_image: str = "skip") -> EvalSet:
    classes = read_classes(cfg["classes"])
    root = Path(cfg["path"])
    folders = sorted(p for p in root.iterdir() if p.is_dir()
                     and not p.name.startswith(".")) if root.is_dir() else []
    if not folders:
        raise DataError(f"{root}: no class folders (one folder of images per class)")
    indices = folder_labels(str(root), [f.name for f in folders], cfg["classes"])
    pairs = [(str(f), i) for i, d in zip(indices, folders) for f in sorted(d.iterdir())
             if not f.name.startswith(".")]
    pairs = pairs[: cfg.get("size")]
    paths, labels = [p for p, _ in pairs], np.array([y for _, y in pairs], dtype=np.int64)
    return EvalSet(FileImages(paths, size, on_bad_image, decode=cfg.get("decode", "exact")), checked_labels(labels, classes, cfg),
                   classes)
