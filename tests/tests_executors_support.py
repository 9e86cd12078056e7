"""Waiting on SLURM jobs, shared by the executor tests."""

import time

from xspec.executors.slurm import SlurmExecutor

WAIT_S = 420  # generous: a loaded 2-core machine needs about 300 s for the timeout study


def wait_until(predicate, what: str, timeout: float = WAIT_S, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def finished(study, workspace) -> dict:
    states = SlurmExecutor().states(study.plan, workspace)
    settled = all(state in ("done", "failed") or detail.startswith("blocked")
                  for state, detail in states.values())
    return states if settled else {}


