"""Executors run or queue a plan's pending nodes, behind one protocol (`base.Executor`:
submit, states, cancel): `debug` (in-process), `local` (child processes) and `slurm` (submitit;
a batch executor: `xspec submit` queues the nodes and returns at once)."""

from xspec.errors import XspecError

EXECUTORS = {"debug": "xspec.executors.debug:DebugExecutor",
             "local": "xspec.executors.local:LocalExecutor",
             "slurm": "xspec.executors.slurm:SlurmExecutor"}


def get_executor(name: str):
    from xspec.extend.registry import resolve

    if name not in EXECUTORS:
        raise XspecError(f"unknown executor {name!r}; allowed: {', '.join(sorted(EXECUTORS))}")
    return resolve(EXECUTORS[name])()
