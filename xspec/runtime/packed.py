"""A packed job: sibling cleaning nodes (`[run] pack = K`) trained side by side in one process.

The siblings share their inputs (start checkpoint, data, poisons, augmentation seeds,
evaluation set), so the job builds them once and trains them in the one epoch loop
(`xspec.runtime.fit.train_members`, `xspec.runtime.loop`) that trains a node alone: each
training batch is decoded, poisoned and augmented once and every member takes its optimiser
step on it, one after the other; each evaluation batch is decoded and triggered once and scored
by every member. A member's computation is the same as when it runs alone, so its metrics are
too.

Every member keeps its own run folder, metrics, checkpoints, status and resume point. A member
that fails (a NaN loss) is marked failed and the others go on.

Entry point in its own process: `python -m xspec.runtime.packed SETTINGS RUN_DIR...`.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from xspec.errors import XspecError
from xspec.runtime import provenance
from xspec.runtime.defences import defences
from xspec.runtime.distributed import Dist
from xspec.runtime.fit import Member, train_members
from xspec.runtime.current import CURRENT
from xspec.runtime.node import Context, configure_process, failure_reason, node_logger
from xspec.spec.tables.settings import RunSettings
from xspec.runtime.stages.clean import CleanInputs, clean_inputs, keep_all_checkpoints
from xspec.store.workspace import RunDir, Workspace, atomic_write_json


class PackTooLarge(XspecError):
    pass


@dataclass
class Seat:
    """A member of the pack: its node's context, log and training member."""

    ctx: Context
    close_log: object
    member: Member | None = None
    error: str | None = None  # why it failed


def pack_memory_estimate(model: torch.nn.Module, k: int) -> int:
    """Bytes that K members add beyond the one model already loaded: K-1 more copies of the
    weights, and per member its gradients and AdamW's two moment buffers. Members step one
    after the other, so activations are held for one member at a time and are not counted."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return (k - 1) * weights + k * 3 * params


def available_memory(device: torch.device) -> int:
    """Free bytes where the models live: CUDA's free memory, or the machine's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(model: torch.nn.Module, k: int, device: torch.device) -> None:
    need, free = pack_memory_estimate(model, k), available_memory(device)
    if need > free:
        raise PackTooLarge(
            f"run.pack = {k}: {k} packed models with their gradients and AdamW state need about "
            f"{need / 2**30:.2f} GiB more, but {device.type} has {free / 2**30:.2f} GiB free; "
            f"lower run.pack")


def run_pack(records: list[dict], workspace_root: str, settings: RunSettings | dict,
             progress: dict | None = None, echo: bool = False) -> dict[str, str | None]:
    """Run the pack's nodes in this process; returns {node id: None if done, else the reason
    it failed}. Members already done are left alone."""
    workspace, settings = Workspace(workspace_root), RunSettings.of(settings)
    CURRENT["workspace"] = workspace
    runs = {r["id"]: RunDir(workspace.runs / r["run_name"]) for r in records}
    todo = [r for r in records if not runs[r["id"]].done]
    result: dict[str, str | None] = {r["id"]: None for r in records}
    if not todo:
        return result
    device = configure_process(settings)
    seats = []
    for record in todo:
        run = runs[record["id"]]
        log, handle = node_logger(run, record["name"], echo)
        run.set_status("running", started=time.time(), pid=os.getpid(),
                       host=os.uname().nodename, error=None, world_size=1,
                       packed_with=[r["id"] for r in todo if r is not record])
        ctx = Context(record, run, workspace, settings, device, log=log,
                      progress=(progress or {}).get(record["id"]), dist=Dist())
        provenance.start(run, settings, device)
        seats.append(Seat(ctx, handle))
    log_all(seats, f"packed with {len(seats) - 1} sibling(s) in process {os.getpid()}"
                   + (", stepped as one stacked model (run.fuse)" if settings.fuse else ""))
    try:  # what the members share failing fails them all
        inputs = clean_inputs(seats[0].ctx)
        check_fits(inputs.model, len(seats), device)
        _seat_members(seats, inputs)
        train_members([s.member for s in seats if s.error is None], inputs.data,
                      inputs.evaluator, inputs.heldout, device, step=_step(settings))
    except Exception as exc:
        for seat in seats:
            if seat.error is None:
                _fail(seat, exc)
    for seat in seats:
        if seat.error is None:
            seat.ctx.run.set_status("done", finished=time.time(), error=None)
        result[seat.ctx.node["id"]] = seat.error
        seat.close_log.close()
    return result


def _step(settings: RunSettings):
    """How the members step on each batch: one after the other, or (`run.fuse`) as one
    stacked model in one vmapped pass (xspec.runtime.fused)."""
    if settings.fuse:
        from xspec.runtime.fused import FusedStep

        return FusedStep()
    from xspec.runtime.loop import step_each

    return step_each


def log_all(seats: list[Seat], message: str) -> None:
    for seat in seats:
        seat.ctx.log(message)


def _seat_members(seats: list[Seat], inputs: CleanInputs) -> None:
    """One model per member, copied from the loaded start before any of them trains."""
    start = inputs.model
    models = [start] + [copy.deepcopy(start) for _ in seats[1:]]
    for seat, model in zip(seats, models):
        try:
            seat.member = Member(seat.ctx, model, keep_all_checkpoints(seat.ctx),
                                 defences(seat.ctx))
        except Exception as exc:  # noqa: BLE001 - this member's failure (its last.pt, say)
            _fail(seat, exc)
        else:
            seat.member.trainee.on_fail = lambda exc, seat=seat: _fail(seat, exc)


def _fail(seat: Seat, exc: Exception) -> None:
    """Record the failure; called inside the `except` that caught `exc`."""
    seat.error = failure_reason(exc)
    seat.close_log.write(traceback.format_exc())
    seat.ctx.log(f"failed: {seat.error}")
    seat.ctx.run.set_status("failed", error=seat.error, log=str(seat.ctx.run.log_file))


def _progress_writer(run: RunDir):
    last = [0.0]

    def write(state) -> None:
        now = time.monotonic()
        if now - last[0] > 1.0:
            last[0] = now
            atomic_write_json(run.path / "progress.json", {"epoch": state.epoch,
                                                           "step": state.step})

    return write


def main(argv: list[str]) -> int:
    settings = RunSettings.model_validate_json(argv[0])
    runs = [RunDir(Path(p)) for p in argv[1:]]
    records = [run.read_node() for run in runs]
    progress = {r["id"]: _progress_writer(run) for r, run in zip(records, runs)}
    result = run_pack(records, str(runs[0].path.parent.parent), settings, progress)
    for record in records:
        if result[record["id"]] is not None:
            print(f"xspec: {record['name']}: {result[record['id']]}", file=sys.stderr)
    return 1 if any(result.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
