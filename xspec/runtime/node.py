"""One node run, from its node.json to its stage function; what every executor calls.

    python -m xspec.runtime.node RUN_DIR SETTINGS_JSON     (a local child process)
    execute_node(record, workspace_root, settings)        (in-process: debug, SLURM jobs)

`execute_node` imports the study's plugins, sets torch up (threads, TF32, device, DDP ranks),
marks the run running, looks the node's kind up in the registry (`xspec.extend.NODE_KINDS`) and
calls its stage function with a `Context`; a failure is recorded in status.json with its reason
and the traceback goes to log.txt. Helper DDP ranks run only training stages and write nothing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xspec.errors import ExecutionError, XspecError
from xspec.extend.plugins import import_recorded
from xspec.runtime import provenance
from xspec.extend.registry import NODE_KINDS, resolve
from xspec.runtime.distributed import Dist, rank_device, setup
from xspec.runtime.current import CURRENT
from xspec.spec.tables.settings import RunSettings
from xspec.store.workspace import RunDir, Workspace, atomic_write_json


@dataclass
class Context:
    """What a stage function gets: its node record, run folder, workspace and run settings."""

    node: dict
    run: RunDir
    workspace: Workspace
    settings: RunSettings
    device: torch.device
    log: Callable[[str], None] = print
    progress: Callable | None = None
    dist: Dist = field(default_factory=Dist)

    @property
    def config(self) -> dict:
        return self.node["config"]

    @property
    def cfg(self):
        """The config as its kind's typed model (`register_node_kind(config=...)`), validated
        once per process; kinds without a model have only `config`."""
        if "_typed" not in self.__dict__:
            model = NODE_KINDS.get(self.node["kind"]).config_model()
            config = self.node["config"]
            self.__dict__["_typed"] = (None if model is None else config
                                       if isinstance(config, model) else
                                       model.model_validate(config))
        return self.__dict__["_typed"]

    def deps(self, kind: str) -> list[RunDir]:
        """The run folders of this node's dependencies of `kind`, in dependency order."""
        runs = [RunDir(self.workspace.runs / name) for name in self.node["dep_runs"]]
        kinds = self.node.get("dep_kinds") or [run.read_node()["kind"] for run in runs]
        return [run for run, k in zip(runs, kinds) if k == kind]

    def dep(self, kind: str) -> RunDir:
        found = self.deps(kind)
        if len(found) != 1:
            raise KeyError(f"node {self.node['name']} has {len(found)} {kind} dependencies, "
                           "not one")
        return found[0]

    def first_dep(self) -> RunDir:
        """The node's own upstream chain: e.g. the node a clean run starts from."""
        return RunDir(self.workspace.runs / self.node["dep_runs"][0])


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def configure_process(settings: RunSettings | dict) -> torch.device:
    """Plugins, threads, TF32 and log level for this process; returns the device nodes run on.

    On the CPU with loader workers and no `run.threads`, the training process leaves the
    workers their cores: compute threads that share cores with busy workers spin-wait at every
    parallel region (measured here: 2 workers + 2 threads on 2 cores ran 2.4x slower than no
    workers; 2 workers + 1 thread ran 2.3x faster)."""
    settings = RunSettings.of(settings)
    import_recorded(settings.plugins)
    device = pick_device(settings.device)
    threads = settings.threads
    if not threads and device.type == "cpu" and settings.workers > 0:
        threads = max(1, len(os.sched_getaffinity(0)) - settings.workers)
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random init
    return device


@contextlib.contextmanager
def process_settings_kept():
    """Undo `configure_process` afterwards: the debug executor runs nodes inside the caller's
    process, whose later work must not inherit one node's thread count or TF32 flags (a leaked
    thread count changes float summation order, so later runs differed in the last bits)."""
    threads = torch.get_num_threads()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


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
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device writing {exc.filename or 'the run folder'}; free "
                "some space and run again (the node resumes from its last epoch)")
    return str(exc) if isinstance(exc, XspecError) else f"{type(exc).__name__}: {exc}"


def stage_of(kind: str):
    """The stage function of a node kind, from the registry."""
    return resolve(NODE_KINDS.get(kind).stage)


def execute_node(record: dict, workspace_root: str, settings: RunSettings | dict,
                 progress=None, echo: bool = False) -> str:
    """Run the node described by `record` (node.json); returns its final state."""
    settings = RunSettings.of(settings)
    workspace = Workspace(workspace_root)
    CURRENT["workspace"] = workspace  # xspec.runtime.current: see there
    run = RunDir(workspace.runs / record["run_name"])
    if run.done:
        return "done"
    device = configure_process(settings)
    kind = NODE_KINDS.get(record["kind"])
    dist = setup(device)
    device = rank_device(device, dist)
    if not dist.main:  # helper ranks train alongside rank 0, which writes everything
        if kind.trains:
            stage_of(kind.name)(Context(record, run, workspace, settings, device,
                                        log=lambda message: None, dist=dist))
        return "done"
    log, log_handle = node_logger(run, record["name"], echo)
    log(f"started (pid {os.getpid()} on {os.uname().nodename})")
    run.set_status("running", started=time.time(), pid=os.getpid(), host=os.uname().nodename,
                   error=None, world_size=dist.world, packed_with=None)
    ctx = Context(record, run, workspace, settings, device, log=log, progress=progress, dist=dist)
    provenance.start(run, settings, device, dist.world)
    try:
        ctx.cfg  # noqa: B018  (a config its kind's model refuses fails here, before any work)
        stage_of(kind.name)(ctx)
    except Exception as exc:
        reason = failure_reason(exc)
        with contextlib.suppress(OSError):  # a full disk must not hide the reason
            log_handle.write(traceback.format_exc())
        run.set_status("failed", error=reason, log=str(run.log_file))
        raise ExecutionError(record["id"][:12], reason) from exc
    finally:
        with contextlib.suppress(OSError):
            log_handle.close()
    run.set_status("done", finished=time.time(), error=None)
    return "done"


def main(argv: list[str]) -> int:
    """A node in its own process: progress.json at most once a second, exit code 1 on failure."""
    run = RunDir(Path(argv[0]))
    settings = RunSettings.model_validate_json(argv[1])
    last = [0.0]

    def progress(state) -> None:
        now = time.monotonic()
        if now - last[0] > 1.0:
            last[0] = now
            atomic_write_json(run.path / "progress.json", {"epoch": state.epoch, "step": state.step})

    try:
        record = run.read_node()
    except XspecError as exc:  # a truncated node.json: named, not "killed?"
        run.set_status("failed", error=str(exc))
        print(f"xspec: {exc}", file=sys.stderr)
        return 1
    finished_before = run.done
    try:
        execute_node(record, str(run.path.parent.parent), settings, progress=progress)
    except ExecutionError as exc:
        print(f"xspec: {exc}", file=sys.stderr)
        return 1
    except XspecError as exc:  # before the stage ran: a plugin, the device; named, not "killed?"
        run.set_status("failed", error=str(exc))
        print(f"xspec: {exc}", file=sys.stderr)
        return 1
    if not finished_before:  # what `bench/bench_estimate_measured.py` sets the estimate against
        run.set_status("done", cpu_s=round(process_cpu_seconds(), 2))
    return 0


def process_cpu_seconds() -> float:
    """CPU seconds of this process since it started (interpreter, imports, the stage) and of
    the children it waited for (loader workers)."""
    import resource

    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
