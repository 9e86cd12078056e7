"""Executors run a plan's pending nodes: `debug` (in-process), `local` (child processes)."""

from xspec.errors import XspecError


def get_executor(name: str):
    from xspec.executors.debug import DebugExecutor
    from xspec.executors.local import LocalExecutor

    executors = {"debug": DebugExecutor, "local": LocalExecutor}
    if name not in executors:
        raise XspecError(f"unknown executor {name!r}; allowed: {', '.join(sorted(executors))}")
    return executors[name]()
