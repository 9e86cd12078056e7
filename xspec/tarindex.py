"""WebDataset shards in img2dataset's layout, read with the standard library (no torch).

A shard is an uncompressed tar of samples; the members of one sample share a key (the member's
path up to the first dot of its file name): `KEY.jpg`, `KEY.txt` (the caption), `KEY.json`.
img2dataset also writes `NNNNN_stats.json` beside each shard and webdataset tools a
`sizes.json`; either gives the number of samples without opening the tars.

Why the standard library and not the `webdataset` package: `webdataset` streams shards in order
and shuffles with a buffer, so which samples an epoch sees, and in which order, depends on the
buffer, the worker count and the shard split. xspec needs random access (an epoch's order is a
permutation drawn from the seed and the epoch, the same for any number of workers and after a
resume; poisoning and the cleaning set pick samples by position). So `index_shard` lists each
tar's members once (`tarfile` reads the 512-byte headers), and a sample's image is then read by
its byte range with `os.pread`, which is safe in forked loader workers sharing a descriptor.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def expand_braces(pattern: str) -> list[str]:
    """`a/{00000..00002}.tar` -> a/00000.tar, a/00001.tar, a/00002.tar; `{x,y}` lists too.
    Ranges keep the zero padding of their first bound; several braces multiply."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    bounds = _RANGE.fullmatch(body)
    if bounds:
        low, high = bounds.groups()
        width = len(low) if low.startswith("0") else 0
        step = 1 if int(high) >= int(low) else -1
        options = [str(i).zfill(width) for i in range(int(low), int(high) + step, step)]
    elif "," in body:
        options = body.split(",")
    else:  # not a pattern: keep the braces literally
        return [head + match.group(0) + rest for rest in expand_braces(tail)]
    return [head + option + rest for option in options for rest in expand_braces(tail)]


def shard_paths(pattern: str) -> list[str]:
    """The shard files a `path` names: a brace pattern, a glob, or a folder of *.tar files."""
    if os.path.isdir(pattern):
        return sorted(glob.glob(os.path.join(pattern, "*.tar")))
    paths = []
    for expanded in expand_braces(pattern):
        paths += sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
    return paths


def declared_size(paths: list[str]) -> int | None:
    """Samples in the shards by their metadata (sizes.json, else every NNNNN_stats.json's
    "successes"), or None when a shard has neither."""
    total = 0
    sizes: dict[str, dict] = {}
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in sizes:
            try:
                sizes[folder] = json.loads(Path(folder or ".", "sizes.json").read_text())
            except (OSError, ValueError):
                sizes[folder] = {}
        if name in sizes[folder]:
            total += int(sizes[folder][name])
            continue
        try:
            stats = json.loads(Path(path).with_name(Path(name).stem + "_stats.json").read_text())
            total += int(stats["successes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return total


@dataclass
class Sample:
    key: str
    members: dict[str, tuple[int, int]] = field(default_factory=dict)  # ext -> (offset, size)


def index_shard(path: str) -> list[Sample]:
    """The samples of one tar in member order, each with the byte range of each member."""
    samples: dict[str, Sample] = {}
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, name = os.path.split(member.name)
            if "." not in name or name.startswith("."):
                continue
            stem, ext = name.split(".", 1)
            key = f"{folder}/{stem}" if folder else stem
            sample = samples.setdefault(key, Sample(key))
            sample.members[ext.lower()] = (member.offset_data, member.size)
    return list(samples.values())


def read_range(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise OSError(f"short read: {len(data)} of {size} bytes at offset {offset}")
    return data
