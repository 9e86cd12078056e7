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


def configure_process(settings: dict) -> torch.device:
    """Threads, TF32 and log level for this process; returns the device nodes run on."""
    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random init
    return pick_device(settings.get("device", "auto"))


def node_logger(run: RunDir, name: str, echo: bool = False):
    """(log function, handle to close): timestamped lines in the run's log.txt."""
    handle = open(run.log_file, "a", buffering=1)

    def log(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {name}: {message}"
        handle.write(line + "\n")
        if echo:
            print(line, flush=True)

    return log, handle


def failure_reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, XspecError) else f"{type(exc).__name__}: {exc}"


def execute_node(record: dict, workspace_root: str, settings: dict, progress=None,
                 echo: bool = False) -> str:
    """Run the node described by `record` (node.json); returns its final state."""
    workspace = Workspace(workspace_root)
    run = RunDir(workspace.runs / record["run_name"])
    if run.done:
        return "done"
    device = configure_process(settings)
    dist = setup(device)
    if not dist.main:  # helper ranks train alongside rank 0, which writes everything
        if record["kind"] in TRAINING_KINDS:
            STAGES[record["kind"]](Context(record, run, workspace, settings, device,
                                           log=lambda message: None, dist=dist))
        return "done"
    log, log_handle = node_logger(run, record["name"], echo)
    log(f"started (pid {os.getpid()} on {os.uname().nodename})")
    run.set_status("running", started=time.time(), pid=os.getpid(), host=os.uname().nodename,
                   error=None, world_size=dist.world)
    ctx = Context(record, run, workspace, settings, device, log=log, progress=progress, dist=dist)
    try:
        STAGES[record["kind"]](ctx)
    except Exception as exc:
        reason = failure_reason(exc)
        log_handle.write(traceback.format_exc())
        run.set_status("failed", error=reason, log=str(run.log_file))
        raise ExecutionError(record["id"][:12], reason) from exc
    finally:
        log_handle.close()
    run.set_status("done", finished=time.time(), error=None)
    return "done"
