"""Several processes training one node: SLURM tasks (through submitit) or torchrun.

Each rank encodes its shard of the global batch; features are gathered with autograd so every
rank's loss sees the global batch (open_clip's ClipLoss with gather_with_grad), and DDP averages
the gradients: the update equals one process training on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as td


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This rank's contiguous share of a global batch (gathering restores the order)."""
        n = len(items)
        return items[self.rank * n // self.world:(self.rank + 1) * n // self.world]

    def barrier(self) -> None:
        if self.world > 1:
            td.barrier()


def setup(device: torch.device) -> Dist:
    """Join the process group when this node runs as several tasks; else a world of one."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "RANK" not in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        # CUDA_VISIBLE_DEVICES is read once, when CUDA initialises (picking the device did):
        # each rank takes its GPU by local rank instead (`rank_device`).
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not td.is_initialized():
        if device.type == "cuda":  # NCCL binds to the current device
            torch.cuda.set_device(_local_gpu())
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size())


def rank_device(device: torch.device, dist: Dist) -> torch.device:
    """This rank's GPU: with several ranks on a machine that shows them all its GPUs (SLURM's
    `--gpus-per-node`), the one of its local rank, on every node of a multi-node job; a
    rank shown one GPU (`--gpus-per-task`) uses it. Other devices are returned as they are."""
    if device.type != "cuda" or dist.world == 1:
        return device
    return torch.device("cuda", _local_gpu())


def _local_gpu() -> int:
    count = torch.cuda.device_count()
    return int(os.environ.get("LOCAL_RANK", "0")) % count if count > 1 else 0


def gather(tensor: torch.Tensor, dist: Dist) -> torch.Tensor:
    """All ranks' rows in rank order, differentiable (gradients flow back to their owners)."""
    if dist.world == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor))


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    if dist.world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
