"""Grid packing (`[run] pack = K`): which pending nodes may train side by side in one job.

Siblings of a cleaning grid start from the same checkpoint and read the same data, poisons,
augmentation seeds and evaluation set; they differ only in how they optimise. A packed job
decodes and augments each batch once and steps every member on it, and scores every member on
each decoded evaluation batch. Each member stays its own node (id, run folder, status, resume).
"""

from __future__ import annotations

from collections.abc import Sequence

from xspec.compiler.hashing import canonical_json
from xspec.extend.registry import DEFENCES
from xspec.spec.base import PerMember, marked

PACKABLE_KINDS = ("clean",)


def pack_key(node) -> str | None:
    """Equal for nodes that may share a job; None for a node that always runs alone.

    Deep clustering embeds the whole cleaning set with each member's own model every epoch,
    so it shares nothing worth a pack."""
    if node.kind not in PACKABLE_KINDS or "deep_cluster" in node.identity:
        return None
    if any(not d.packable and d.name in node.identity for d in DEFENCES):
        return None  # it trains on batches of its own (SuFi's labelled set)
    own = marked(type(node.config), PerMember)  # fields members may differ in
    shared = {k: v for k, v in node.identity.items() if k not in own}
    return canonical_json({"kind": node.kind, "deps": sorted(node.deps), "config": shared})


def packs(nodes: Sequence, size: int) -> list[list]:
    """The nodes in jobs of at most `size` siblings, in the order of each job's first node;
    with `size` 1, or for nodes without siblings, one node per job."""
    jobs: list[list] = []
    open_job: dict[str, list] = {}
    for node in nodes:
        key = pack_key(node) if size > 1 else None
        job = open_job.get(key) if key is not None else None
        if job is None or len(job) >= size:
            job = []
            jobs.append(job)
            if key is not None:
                open_job[key] = job
        job.append(node)
    return jobs


def packed_count(nodes: Sequence, size: int) -> tuple[int, int]:
    """(jobs with more than one node, nodes in them)."""
    multi = [job for job in packs(nodes, size) if len(job) > 1]
    return len(multi), sum(len(job) for job in multi)
