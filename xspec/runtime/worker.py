"""Entry point of a node run in its own process: `python -m xspec.runtime.worker RUN_DIR SETTINGS`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from xspec.errors import ExecutionError
from xspec.runtime.runner import execute_node
from xspec.store.workspace import RunDir, atomic_write_json


def main(argv: list[str]) -> int:
    run = RunDir(Path(argv[0]))
    settings = json.loads(argv[1])
    record = run.read_node()
    last = [0.0]

    def progress(state) -> None:
        now = time.monotonic()
        if now - last[0] > 1.0:
            last[0] = now
            atomic_write_json(run.path / "progress.json", {"epoch": state.epoch, "step": state.step})

    try:
        execute_node(record, str(run.path.parent.parent), settings, progress=progress)
    except ExecutionError as exc:
        print(f"xspec: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
