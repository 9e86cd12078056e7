"""Submit a plan's pending nodes to SLURM through submitit, and ask where they stand.

`submit` returns at once: one job (or job array) per kind and layer of the DAG, each waiting on
the jobs of its dependencies with `afterok`. Jobs are checkpointable: on timeout or preemption
submitit requeues them and `execute_node` resumes from `checkpoints/last.pt`.

The workspace is the truth about finished work (status.json); `runs/<node>/slurm.json` records
the job that was submitted for a node, and `squeue` says whether that job is queued or running.
There is no accounting database (sacct) to rely on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from xspec.compiler.packing import packs
from xspec.spec.cluster import parse_time, unsafe_options
from xspec.errors import XspecError
from xspec.executors.base import Outcome, prepare
from xspec.executors.local import WORKER_PYTHON
from xspec.extend.registry import NODE_KINDS
from xspec.store.locks import claimed
from xspec.store.processes import gone
from xspec.store.workspace import RunDir, Workspace, atomic_write_json, node_record
from xspec.spec.tables.settings import ClusterOptions, RunSettings

DEFAULTS = {"time": "24:00:00", "cpus_per_task": 1, "array_parallelism": 256,
            "max_requeues": 10}
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED",
          "RESV_DEL_HOLD", "SPECIAL_EXIT"}
RUNNING = {"RUNNING", "COMPLETING", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
NEVER = "DependencyNeverSatisfied"
NO_SLURM = ("xspec submit needs a SLURM login node and this machine has no SLURM; "
            "`xspec run` runs the study here")


class SlurmError(XspecError):
    """sbatch, squeue or scancel refused or failed."""


def trains(kind: str) -> bool:
    """Training kinds get GPUs and one task per GPU (DDP); poison, select, ... do not."""
    found = NODE_KINDS.find(kind)
    return found is not None and found.trains


def stage_kinds() -> list[str]:
    """The node kinds with a `[cluster.<kind>]` table."""
    return [k.name for k in NODE_KINDS if k.cluster]


def options_for(options: dict, kind: str) -> dict:
    """Checked options of one node kind: shared options overridden by its own table."""
    shared = {k: v for k, v in options.items() if k not in stage_kinds()}
    return check_options({**shared, **(options.get(kind) or {})})


def check_options(options: dict) -> dict:
    """Options with None dropped and defaults filled in; every unknown or bad one reported, by
    the model that checks the spec's [cluster] tables (`ClusterOptions`): one source of truth."""
    given = {k: v for k, v in options.items() if v is not None}
    problems = unsafe_options(given)  # a value that would leave its #SBATCH line, first
    named = {k for k in given if any(p.startswith(f"slurm option {k!r}") for p in problems)}
    problems += ClusterOptions.problems({k: v for k, v in given.items() if k not in named})
    if problems:
        raise XspecError("\n".join(problems))
    return {**DEFAULTS, **given}


def slurm_parameters(options: dict, node) -> dict:
    """submitit `update_parameters` keywords for one node: pure, golden-tested.

    slurmctld checks time limits every 30 s and sends the checkpoint signal up to 30 s early,
    so the signal comes `signal_delay_s` to `signal_delay_s + 30` s before the limit. The default
    is 90 s, less for short limits so that a job still gets half its time (a one-minute job
    gets 5 s, hence 25 to 55 s of work per attempt)."""
    opts = check_options(options)
    minutes = parse_time(opts["time"])
    params = {
        "name": f"xspec-{node.kind}",
        "timeout_min": minutes,
        # Training jobs may span machines (`nodes`): DDP across every task of every node, the
        # ranks and rendezvous from submitit's environment (xspec.runtime.distributed.setup).
        "nodes": (opts.get("nodes") or 1) if trains(node.kind) else 1,
        # One task per GPU for training (DDP across the tasks); the rest run as one task.
        "tasks_per_node": (opts.get("tasks_per_node") or opts.get("gpus_per_node") or 1)
        if trains(node.kind) else 1,
        "cpus_per_task": opts["cpus_per_task"],
        "slurm_array_parallelism": opts["array_parallelism"],
        "slurm_signal_delay_s": opts.get("signal_delay_s") or min(90, max(5, minutes * 30 - 30)),
    }
    if opts.get("gpus_per_node") and trains(node.kind):
        params["gpus_per_node"] = opts["gpus_per_node"]
    if "mem_gb" in opts:
        params["mem_gb"] = opts["mem_gb"]
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if key in opts:
            params[f"slurm_{key}"] = opts[key]
    if opts.get("additional"):
        params["slurm_additional_parameters"] = dict(opts["additional"])
    return params


class NodeJob(Checkpointable):
    """What a SLURM job runs: one node, resumable. On timeout or preemption submitit calls
    `checkpoint`, requeues the job, and the next attempt resumes from `last.pt`."""

    def __init__(self, record: dict, workspace_root: str, settings: RunSettings):
        self.record, self.workspace_root, self.settings = record, workspace_root, settings

    def __call__(self) -> str:
        from xspec.runtime.node import execute_node

        with _claims([self.record], self.workspace_root):
            return execute_node(self.record, self.workspace_root, self.settings)

    def checkpoint(self) -> DelayedSubmission:
        _note_requeue(self.record, self.workspace_root)
        return DelayedSubmission(self)


def _claims(records: list[dict], workspace_root: str):
    """Rank 0 claims the job's nodes (`xspec.store.locks`), so an `xspec run` sharing the
    workspace waits for them instead of running them too; helper ranks follow rank 0."""
    if int(os.environ.get("SLURM_PROCID", "0")) != 0:
        return contextlib.nullcontext()
    return claimed([Path(workspace_root) / "runs" / r["run_name"] for r in records])


def _note_requeue(record: dict, workspace_root: str) -> None:
    run = RunDir(Path(workspace_root) / "runs" / record["run_name"])
    with open(run.log_file, "a") as log:
        log.write(f"{time.strftime('%H:%M:%S')} {record['name']}: timed out or "
                  "preempted; requeued, resumes from its last epoch checkpoint\n")


class PackJob(Checkpointable):
    """What a SLURM job runs for packed siblings (`[run] pack`): one process trains them all;
    each resumes from its own `last.pt` when the job is requeued."""

    def __init__(self, records: list[dict], workspace_root: str, settings: RunSettings):
        self.records, self.workspace_root, self.settings = records, workspace_root, settings

    def __call__(self) -> str:
        from xspec.runtime.packed import run_pack

        with _claims(self.records, self.workspace_root):
            result = run_pack(self.records, self.workspace_root, self.settings)
        failed = [f"{r['name']}: {result[r['id']]}" for r in self.records if result[r["id"]]]
        if failed:
            raise XspecError("packed members failed:\n" + "\n".join(failed))
        return "done"

    def checkpoint(self) -> DelayedSubmission:
        for record in self.records:
            _note_requeue(record, self.workspace_root)
        return DelayedSubmission(self)


def _job(nodes: list, workspace: Workspace, settings: RunSettings):
    if len(nodes) == 1:
        return NodeJob(node_record(nodes[0]), str(workspace.root), settings)
    return PackJob([node_record(n) for n in nodes], str(workspace.root), settings)


def layers(plan) -> dict[str, int]:
    """Depth of each node in the DAG: roots are 0, others one more than their deepest dependency."""
    depth: dict[str, int] = {}
    for node in plan.ordered():
        depth[node.id] = 1 + max((depth[d] for d in node.deps), default=-1)
    return depth


def job_file(run: RunDir) -> Path:
    return run.path / "slurm.json"


def read_job(run: RunDir) -> dict | None:
    try:
        return json.loads(job_file(run).read_text())
    except FileNotFoundError:
        return None


def _record(run: RunDir, job, array_index: int | None, dependency: str | None) -> None:
    """Write runs/<node>/slurm.json: the node's job, where its SLURM logs go, earlier jobs."""
    previous = read_job(run)
    atomic_write_json(job_file(run), {
        "job_id": job.job_id, "array_index": array_index, "submitted": time.time(),
        "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
        "dependency": dependency,
        "previous": previous.get("previous", []) + [previous["job_id"]] if previous else []})


def squeue(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{job id: (SLURM state, reason)} for the jobs slurmctld still knows."""
    if not job_ids:
        return {}
    result = _slurm(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%r",
                     "-j", ",".join(sorted(set(job_ids)))], allow="Invalid job id")
    found = {}
    for line in result.splitlines():
        job_id, state, reason = line.strip().split("|", 2)
        found[job_id] = (state, reason)
    return found


def _slurm(command: list[str], allow: str | None = None) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SlurmError(f"{command[0]} not found: is this a SLURM login node?") from None
    if done.returncode != 0:
        if allow and allow in done.stderr:
            return ""
        raise SlurmError(f"{' '.join(command[:2])} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


class SlurmExecutor:
    name = "slurm"
    batch = True

    def submit(self, plan, workspace: Workspace, settings: RunSettings | dict,
               options: dict | None = None, reporter=None) -> Outcome:
        """Submit every node that is neither done nor queued/running; `Outcome.jobs` lists
        (node, job id)."""
        options, settings = options or {}, RunSettings.of(settings)
        opts = {kind: options_for(options, kind) for kind in stage_kinds()}
        missing = [tool for tool in ("sbatch", "srun", "squeue") if shutil.which(tool) is None]
        if missing:
            raise SlurmError(f"{NO_SLURM} (no {', '.join(missing)} on PATH)")
        pending = prepare(workspace, plan)
        current = self.states(plan, workspace)
        todo = [n for n in pending if current[n.id][0] not in ("queued", "running")]
        stuck = list(dict.fromkeys(read_job(workspace.run_dir(n))["job_id"] for n in todo
                                   if current[n.id][1].startswith("blocked")))
        if stuck:
            _slurm(["scancel", *stuck])
        job_of = {n.id: read_job(workspace.run_dir(n))["job_id"] for n in pending
                  if n not in todo and read_job(workspace.run_dir(n))}
        depth, groups = layers(plan), {}
        for node in todo:
            groups.setdefault((depth[node.id], node.kind), []).append(node)
        submitted = []
        try:
            for _, nodes in sorted(groups.items()):
                ids = self._submit_group(plan, workspace, settings, opts, nodes, job_of)
                for node, job_id in zip(nodes, ids):
                    job_of[node.id] = job_id
                    submitted.append((node, job_id))
        except SlurmError as exc:
            if not submitted:
                raise
            ids = [job_id for _, job_id in submitted]
            _slurm(["scancel", *ids])
            raise SlurmError(f"{exc}\ncancelled the jobs submitted before: {' '.join(ids)}") \
                from None
        return Outcome(skipped=[n.id for n in plan.ordered() if n not in pending],
                       jobs=submitted)

    def _submit_group(self, plan, workspace, settings, opts, nodes, job_of) -> list[str]:
        after = set()
        for node in nodes:
            for dep in node.deps:
                if workspace.state(plan.nodes[dep]) == "done":
                    continue
                if dep not in job_of:
                    raise SlurmError(f"{node.name}: its dependency {plan.nodes[dep].name} is "
                                     "neither done nor submitted to SLURM (running elsewhere?)")
                after.add(job_of[dep])
        opts = opts[nodes[0].kind]
        settings = settings.model_copy(
            update={"threads": settings.threads or opts["cpus_per_task"]})
        params = slurm_parameters(opts, nodes[0])
        extra = dict(params.pop("slurm_additional_parameters", {}))
        if after:
            extra["dependency"] = "afterok:" + ":".join(sorted(after))
        folder = workspace.root / "slurm" / "%j"
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                             slurm_max_num_timeout=opts["max_requeues"],
                                             slurm_python=settings.worker_python
                                             or shlex.join(WORKER_PYTHON))  # or a snapshot's
        except RuntimeError as exc:  # submitit: 'Could not detect "srun"'
            raise SlurmError(f"{NO_SLURM} ({_text(exc)})") from None
        executor.update_parameters(**params, slurm_additional_parameters=extra)
        # A DDP job's tasks would each run the whole pack: packing needs one task per job.
        groups = packs(nodes, settings.pack if params["tasks_per_node"] == 1
                       else 1)
        try:
            with contextlib.redirect_stderr(io.StringIO()), executor.batch():  # sbatch prints
                jobs = [executor.submit(_job(group, workspace, settings)) for group in groups]
        except FileNotFoundError as exc:
            raise SlurmError(f"{NO_SLURM} ({exc.filename or 'sbatch'} not found)") from None
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as exc:
            message = getattr(exc, "stderr", None) or getattr(exc, "output", None) or exc
            raise SlurmError(f"sbatch refused the {nodes[0].kind} jobs: {_text(message)}") from None
        job_of_node = {}
        for index, (group, job) in enumerate(zip(groups, jobs)):
            for node in group:
                _record(workspace.run_dir(node), job, index if len(jobs) > 1 else None,
                        extra.get("dependency"))
                job_of_node[node.id] = job.job_id
        return [job_of_node[node.id] for node in nodes]

    def states(self, plan, workspace: Workspace) -> dict[str, tuple[str, str]]:
        """{node id: (state, detail)}: pending, queued, running, done or failed, merging each
        node's status.json with what squeue says about its last job."""
        jobs = {n.id: read_job(workspace.run_dir(n)) for n in plan.ordered()}
        queue = squeue([j["job_id"] for j in jobs.values() if j])
        return {n.id: _state(workspace.run_dir(n), jobs[n.id], queue) for n in plan.ordered()}

    def cancel(self, plan, workspace: Workspace) -> list[str]:
        """scancel every job of this plan that is queued or running; return their ids."""
        states = self.states(plan, workspace)
        live = list(dict.fromkeys(  # packed siblings share a job
            read_job(workspace.run_dir(n))["job_id"] for n in plan.ordered()
            if states[n.id][0] in ("queued", "running") and read_job(workspace.run_dir(n))))
        if live:
            _slurm(["scancel", *live])
        return live


def _state(run: RunDir, job: dict | None, queue: dict) -> tuple[str, str]:
    status = run.status()
    state = status.get("state", "pending")
    if state == "done":
        return "done", ""
    if job is None:
        if state == "running" and gone(status):
            return "failed", (f"process {status.get('pid')} on {status.get('host')} is gone "
                              f"before the node finished (killed?)\nlog: {run.log_file}")
        if state == "running":
            return "running", f"outside SLURM (pid {status.get('pid')} on {status.get('host')})"
        return _failed(run, status) if state == "failed" else ("pending", "")
    job_id, log = job["job_id"], job["stderr"]
    slurm_state, reason = queue.get(job_id, (None, ""))
    if slurm_state in QUEUED and reason == NEVER:
        return "pending", f"blocked: job {job_id} waits on a failed dependency; resubmit to retry"
    if slurm_state in QUEUED:
        return "queued", f"job {job_id} ({reason})" if reason and reason != "None" else \
            f"job {job_id}"
    if slurm_state in RUNNING:
        epoch = status.get("epoch") if state == "running" else None
        at = f", epoch {epoch}" if epoch is not None else ""
        return "running", f"job {job_id}{at}\nlog: {run.log_file}"
    if state == "failed":
        return _failed(run, status, log)
    if slurm_state is None and state != "running":
        return "pending", ""
    ended = f"ended {slurm_state}" if slurm_state else "is gone"
    return "failed", f"job {job_id} {ended} before the node finished\nslurm log: {log}"


def _failed(run: RunDir, status: dict, slurm_log: str | None = None) -> tuple[str, str]:
    detail = f"{status.get('error') or 'failed'}\nlog: {run.log_file}"
    return "failed", detail + (f"\nslurm log: {slurm_log}" if slurm_log else "")


def _text(value) -> str:
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()
