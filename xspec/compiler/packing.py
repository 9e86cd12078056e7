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

PACKABLE_KINDS = ("clean",)
# Fields a packed job lets its members differ in: none of them changes a batch's contents.
OPTIMISATION_FIELDS = ("lr", "weight_decay", "warmup_steps", "mmcl_weight", "ssl_weight",
                       "l2_weight", "epochs")


def pack_key(node) -> str | None:
    """Equal for nodes that may share a job; None for a node that always runs alone.

    Deep clustering embeds the whole cleaning set with each member's own model every epoch,
    so it shares nothing worth a pack."""
    if node.kind not in PACKABLE_KINDS or "deep_cluster" in node.config:
        return None
    if any(not d.packable and d.name in node.config for d in DEFENCES):
        return None  # it trains on batches of its own (SuFi's labelled set)
    shared = {k: v for k, v in node.config.items() if k not in OPTIMISATION_FIELDS}
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
