"""A packed job: sibling cleaning nodes (`[run] pack = K`) trained side by side in one process.

The siblings share their inputs (start checkpoint, data, poisons, augmentation seeds,
evaluation set), so the job builds them once: each training batch is decoded, poisoned and
augmented once and every member takes its optimiser step on it, one after the other; each
evaluation batch is decoded and triggered once and scored by every member. A member's
computation is the same as when it runs alone, so its metrics are too.

Every member keeps its own run folder, metrics, checkpoints, status and resume point. A member
that fails (a NaN loss) is marked failed and the others go on.

Entry point in its own process: `python -m xspec.runtime.packed SETTINGS RUN_DIR...`.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xspec.errors import XspecError
from xspec.runtime import provenance
from xspec.runtime.defences import defences
from xspec.runtime.distributed import Dist
from xspec.runtime.fit import Member
from xspec.runtime.current import CURRENT
from xspec.runtime.node import Context, configure_process, failure_reason, node_logger
from xspec.runtime.stages.clean import CleanInputs, clean_inputs, keep_all_checkpoints
from xspec.runtime.train import timed, train_step
from xspec.store.workspace import RunDir, Workspace, atomic_write_json


class PackTooLarge(XspecError):
    pass


@dataclass
class Seat:
    """A member of the pack with what its training loop needs between steps."""

    ctx: Context
    close_log: object
    model: torch.nn.Module | None = None
    member: Member | None = None
    terms: tuple = ()
    on_epoch_start: object = None
    hooks: object = None  # the seat's defences (xspec.runtime.defences.Composed)
    sums: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    error: str | None = None

    @property
    def state(self):
        return self.member.state


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


def run_pack(records: list[dict], workspace_root: str, settings: dict,
             progress: dict | None = None, echo: bool = False) -> dict[str, str | None]:
    """Run the pack's nodes in this process; returns {node id: None if done, else the reason
    it failed}. Members already done are left alone."""
    workspace = Workspace(workspace_root)
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
    log_all(seats, f"packed with {len(seats) - 1} sibling(s) in process {os.getpid()}")
    try:  # what the members share failing fails them all
        inputs = clean_inputs(seats[0].ctx)
        check_fits(inputs.model, len(seats), device)
        _seat_members(seats, inputs)
        train_packed(seats, inputs)
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


def log_all(seats: list[Seat], message: str) -> None:
    for seat in seats:
        seat.ctx.log(message)


def _seat_members(seats: list[Seat], inputs: CleanInputs) -> None:
    """One model per member, copied from the loaded start before any of them trains."""
    start = inputs.model
    models = [start] + [copy.deepcopy(start) for _ in seats[1:]]
    for seat, model in zip(seats, models):
        seat.model = model
    _guard(seats, lambda seat: _seat(seat, inputs))


def _seat(seat: Seat, inputs: CleanInputs) -> None:
    seat.member = Member(seat.ctx, seat.model, keep_all_checkpoints(seat.ctx))
    build = defences(seat.ctx)
    if build is not None:
        seat.hooks = build(seat.model, inputs.data, seat.member.optimizer,
                           seat.member.start_parameters)
        seat.terms, seat.on_epoch_start = seat.hooks.terms, seat.hooks.on_epoch_start


def _fail(seat: Seat, exc: Exception) -> None:
    seat.error = failure_reason(exc)
    seat.close_log.write(traceback.format_exc())
    seat.ctx.log(f"failed: {seat.error}")
    seat.ctx.run.set_status("failed", error=seat.error, log=str(seat.ctx.run.log_file))


def _guard(seats: list[Seat], action) -> list[Seat]:
    """Run action(seat) for each seat; a seat whose action raises fails alone."""
    for seat in seats:
        try:
            action(seat)
        except Exception as exc:
            _fail(seat, exc)
    return [s for s in seats if s.error is None]


def train_packed(seats: list[Seat], inputs: CleanInputs) -> None:
    data, evaluator = inputs.data, inputs.evaluator
    seats = [s for s in seats if s.error is None]
    if not seats:
        return
    starting = [s for s in seats if s.state.epoch == 0]
    if starting:
        _end(starting, inputs, lambda seat, scores, held: seat.member.log_start(scores, held))
    live = seats
    for epoch in range(1, max(s.member.train_cfg.epochs for s in seats) + 1):
        live = [s for s in live if s.error is None]
        active = [s for s in live
                  if s.state.epoch == epoch - 1 and epoch <= s.member.train_cfg.epochs]
        if not active:
            continue
        active = _guard(active, lambda seat: _begin_epoch(seat, epoch))
        started, waited, pairs = time.perf_counter(), 0.0, 0
        for batch, wait in timed(data.batches(epoch)):
            waited, pairs = waited + wait, pairs + len(batch["index"])
            active = _guard(active, lambda seat: _step(seat, data, batch))
            if not active:
                break
        wall = max(time.perf_counter() - started, 1e-9)
        for seat in active:  # each member's pairs/s is the pack's: they all saw every pair
            seat.state.perf = {"pairs_per_s": pairs / wall, "data_wait_share": waited / wall}
            seat.state.epoch = epoch
        active = _guard(active, lambda seat: _finish_epoch(seat, epoch))
        _end(active, inputs, lambda seat, scores, held: seat.member.end_epoch(
            {k: v / max(1, seat.batches) for k, v in seat.sums.items()}, scores, held, data,
            evaluator))
    for seat in [s for s in live if s.error is None]:
        seat.member.finish()


def _end(seats: list[Seat], inputs: CleanInputs, record) -> None:
    """Evaluate the seats' models in one pass (and held-out loss in another), then record."""
    if not seats:
        return
    models = [s.model for s in seats]
    scores = inputs.evaluator.many(models)
    held = inputs.heldout.many(models) if inputs.heldout is not None else [None] * len(seats)
    outcome = dict(zip((id(s) for s in seats), zip(scores, held)))
    _guard(seats, lambda seat: record(seat, *outcome[id(seat)]))


def _begin_epoch(seat: Seat, epoch: int) -> None:
    if seat.on_epoch_start is not None:
        seat.on_epoch_start(epoch)
    seat.model.train()
    seat.sums, seat.batches = {}, 0


def _finish_epoch(seat: Seat, epoch: int) -> None:
    if getattr(seat.hooks, "on_epoch_end", None) is not None:
        seat.hooks.on_epoch_end(epoch)


def _step(seat: Seat, data, batch: dict) -> None:
    member = seat.member
    total_steps = member.train_cfg.epochs * data.steps_per_epoch
    losses = train_step(member.train_cfg, seat.model, seat.model, member.optimizer, batch,
                        seat.state, total_steps, seat.ctx.device, seat.terms,
                        hooks=seat.hooks)
    seat.batches += 1
    for name, value in losses.items():
        seat.sums[name] = seat.sums.get(name, 0.0) + float(value)
    if seat.ctx.progress is not None:
        seat.ctx.progress(seat.state)


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
    settings, runs = json.loads(argv[0]), [RunDir(Path(p)) for p in argv[1:]]
    records = [run.read_node() for run in runs]
    progress = {r["id"]: _progress_writer(run) for r, run in zip(records, runs)}
    result = run_pack(records, str(runs[0].path.parent.parent), settings, progress)
    for record in records:
        if result[record["id"]] is not None:
            print(f"xspec: {record['name']}: {result[record['id']]}", file=sys.stderr)
    return 1 if any(result.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
