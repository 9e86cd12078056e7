"""Run one node in this process: status bookkeeping around the stage function.

This is what every executor calls (in-process, in a local subprocess or in a SLURM job).
"""

from __future__ import annotations

import logging
import os
import time
import traceback

import torch

from xspec.errors import ExecutionError, XspecError
from xspec.runtime.distributed import setup
from xspec.runtime.stages import STAGES, Context

TRAINING_KINDS = ("pretrain", "clean")
from xspec.store.workspace import RunDir, Workspace


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def execute_node(record: dict, workspace_root: str, settings: dict, progress=None,
                 echo: bool = False) -> str:
    """Run the node described by `record` (node.json); returns its final state."""
    workspace = Workspace(workspace_root)
    run = RunDir(workspace.runs / record["run_name"])
    if run.done:
        return "done"
    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random init
    device = pick_device(settings.get("device", "auto"))
    dist = setup(device)
    if not dist.main:  # helper ranks train alongside rank 0, which writes everything
        if record["kind"] in TRAINING_KINDS:
            STAGES[record["kind"]](Context(record, run, workspace, settings, device,
                                           log=lambda message: None, dist=dist))
        return "done"
    log_handle = open(run.log_file, "a", buffering=1)

    def log(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {record['name']}: {message}"
        log_handle.write(line + "\n")
        if echo:
            print(line, flush=True)

    run.set_status("running", started=time.time(), pid=os.getpid(), host=os.uname().nodename,
                   error=None, world_size=dist.world)
    ctx = Context(record, run, workspace, settings, device, log=log, progress=progress, dist=dist)
    try:
        STAGES[record["kind"]](ctx)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, XspecError) else f"{type(exc).__name__}: {exc}"
        log_handle.write(traceback.format_exc())
        run.set_status("failed", error=reason, log=str(run.log_file))
        raise ExecutionError(record["id"][:12], reason) from exc
    finally:
        log_handle.close()
    run.set_status("done", finished=time.time(), error=None)
    return "done"
