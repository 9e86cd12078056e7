"""An evaluation set as a CSV of image paths and integer labels (CleanCLIP's ImageNet validation
layout); image paths relative to the CSV."""

from __future__ import annotations

import os

import numpy as np

from xspec.errors import DataError
from xspec.runtime.data import EvalSet, FileImages, checked_labels, read_csv
from xspec.spec.classes import read_classes


def _int_labels(rows: list[dict], key: str, path: str, classes: int) -> np.ndarray:
    """Integer class indices of a labels CSV; anything else is an error naming the line."""
    labels = []
    for line, row in enumerate(rows, start=2):
        text = (row[key] or "").strip()
        if not text.isdigit() or int(text) >= classes:
            raise DataError(f"{path}: line {line}: label {text!r} is not a class index "
                            f"(an integer 0..{classes - 1})")
        labels.append(int(text))
    return np.array(labels, dtype=np.int64)


def _paths(rows: list[dict], key: str, csv_path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(csv_path))
    return [os.path.join(base, row[key]) for row in rows]


def open_eval(cfg: dict, size: int, on_bad_image: str = "skip") -> EvalSet:
    classes = read_classes(cfg["classes"])
    rows = read_csv(cfg["path"], [cfg["image_key"], cfg["label_key"]])[: cfg.get("size")]
    paths = _paths(rows, cfg["image_key"], cfg["path"])
    labels = _int_labels(rows, cfg["label_key"], cfg["path"], len(classes))
    return EvalSet(FileImages(paths, size, on_bad_image, decode=cfg.get("decode", "exact")), checked_labels(labels, classes, cfg),
                   classes)
