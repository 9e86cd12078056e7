"""State a defence carries from epoch to epoch (RoCLIP's caption pool, SafeCLIP's safe share),
kept beside the node's checkpoints so that a killed and resumed run continues with it.

`save(epoch, state)` writes `<name>_<epoch>.pt` (atomically) at the end of an epoch, before the
node's own `last.pt` of that epoch, and keeps the previous epoch's file: a run killed between the
two resumes from `last.pt` of the previous epoch and finds its state. `load(epoch)` reads the
state saved after `epoch` (None when there is none: a fresh run).
"""

from __future__ import annotations

from pathlib import Path

from xspec.runtime.records import load_checkpoint, save_checkpoint


class EpochState:
    def __init__(self, folder: Path | None, name: str):
        self.folder, self.name = folder, name

    def path(self, epoch: int) -> Path | None:
        return None if self.folder is None else self.folder / f"{self.name}_{epoch}.pt"

    def save(self, epoch: int, state: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.path(epoch), state)
        if epoch >= 2:
            self.path(epoch - 2).unlink(missing_ok=True)

    def load(self, epoch: int) -> dict | None:
        path = self.path(epoch)
        if path is None or epoch < 1 or not path.exists():
            return None
        return load_checkpoint(path)
