"""Executors run a plan's pending nodes: `debug` (in-process), `local` (child processes);
`xspec.executors.slurm` submits them to SLURM (`xspec submit`) and returns at once."""

from xspec.errors import XspecError


def get_executor(name: str):
    from xspec.executors.debug import DebugExecutor
    from xspec.executors.local import LocalExecutor

    executors = {"debug": DebugExecutor, "local": LocalExecutor}
    if name == "slurm":
        raise XspecError("`xspec run` runs here (local or debug); send a plan to SLURM with "
                         "`xspec submit SPEC`")
    if name not in executors:
        raise XspecError(f"unknown executor {name!r}; allowed: {', '.join(sorted(executors))}")
    return executors[name]()
