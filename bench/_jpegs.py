"""Synthetic JPEGs sized as img2dataset writes them, shared by the loader benchmarks.

Each file: shorter side uniform in 256..512, aspect ratio (long / short) uniform in 1..2, either
orientation; content a smooth random colour field plus fine noise (so the entropy, hence the
decode cost, is photo-like rather than flat), quality 90. Listed in a CleanCLIP-layout CSV
(`pairs.csv`: image, caption, label) and an open_clip_train TSV (`openclip.tsv`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = "a red bus parked near the old bridge on a grey morning with people".split()


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    short = int(rng.integers(256, 513))
    long = int(round(short * rng.uniform(1.0, 2.0)))
    return (long, short) if rng.random() < 0.5 else (short, long)


def write_jpegs(folder: Path, n: int, seed: int = 0, fixed: tuple[int, int] | None = None) -> None:
    """`fixed` (width, height): every file that size instead of img2dataset-like sizes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["image,caption,label"]
    for i in range(n):
        width, height = fixed or image_size(rng)
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
        noise = rng.normal(0, 5, (height, width, 1))
        pixels = np.clip(field + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
        caption = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5 + i % 7))
        rows.append(f"{i:05d}.jpg,{caption} {i},{i % 10}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    tsv = ["filepath\ttitle"] + [f"{folder / r.split(',')[0]}\t{r.split(',')[1]}"
                                 for r in rows[1:]]
    (folder / "openclip.tsv").write_text("\n".join(tsv) + "\n")
