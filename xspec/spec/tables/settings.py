"""`[evaluate]`, `[report]`, `[run]` and `[cluster]`."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from xspec.spec.base import (
    Fraction, NonNegativeInt, PositiveFloat, PositiveInt, XspecModel,
)
from xspec.spec.cluster import checked_time
from xspec.spec.wording import describe
from xspec.spec.evalsets import RetrievalSet, SetName, ZeroShotSet, check_names
from xspec.spec.metric_names import Metric  # a registered metric's name


class Evaluate(XspecModel):
    metrics: Annotated[list[Metric], Field(min_length=1)] = ["top1", "top5", "asr"]
    batch_size: PositiveInt = 256
    primary: SetName = "eval"
    """The name of data.eval, the primary set (selection policies, the paper's tables), in the
    results and the report."""
    sets: dict[SetName, ZeroShotSet] = {}
    """More zero-shot sets, measured with the primary one: [evaluate.sets.<name>]."""
    retrieval: dict[SetName, RetrievalSet] = {}
    """Image-caption retrieval sets: [evaluate.retrieval.<name>]."""

    @model_validator(mode="after")
    def _unique_set_names(self):
        check_names(self.primary, self.sets, self.retrieval)
        return self


ReportTable = Literal["selected_models", "best_clean_accuracy", "selection_policies"]
ReportPlot = Literal["pareto", "trajectories", "pretrain_curves", "selection_policies", "losses"]


class Report(XspecModel):
    asr_threshold: Fraction = 0.05
    tables: list[ReportTable] = list(typing.get_args(ReportTable))
    plots: list[ReportPlot] = list(typing.get_args(ReportPlot))


class Run(XspecModel):
    """How nodes execute on this machine; never part of a node's id."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PositiveInt | None = None
    workers: NonNegativeInt = 0
    concurrency: PositiveInt = 1
    # Train up to this many sibling cleaning nodes (same start, data and evaluation; other
    # learning rates, weight decays or loss weights) in one job that decodes, augments and
    # evaluates once for all of them. Each stays its own node.
    pack: PositiveInt = 1
    # Step a pack's members as one stacked model (torch.func vmap; xspec.runtime.fused):
    # batched kernels instead of K small passes; metrics equal to unpacked within float rounding.
    fuse: bool = False
    # Pre-training keeps every epoch's weights (selection needs them); cleaning keeps the
    # final epoch's unless "all" (an RN50 grid of 85 learning rates x 20 epochs is ~700 GB).
    keep_checkpoints: Literal["final", "all"] = "final"
    # torch.compile of the model, and open_clip's gradient checkpointing (activations
    # recomputed in the backward pass: less GPU memory for more compute). Both change speed
    # and memory, not results beyond float rounding (tests/runtime/test_speed.py).
    compile: bool = False
    grad_checkpointing: bool = False

    @model_validator(mode="after")
    def _fuse_needs_a_pack(self):
        if self.fuse and self.pack < 2:
            raise ValueError("fuse = true steps the members of a pack as one stacked model; "
                             "set pack = K (2 or more) with it, or fuse = false")
        return self


class RunSettings(Run):
    """What executors tell every node process about how to run, typed: the study's `[run]`
    table, `evaluate.batch_size`, the data tables' bad-image policy, the plugins to import and
    the interpreter SLURM jobs start (a code snapshot's). Never part of a node's id. Built once
    by `xspec.study.Study.settings`; a node process gets it as JSON (`model_dump_json`)."""

    eval_batch_size: PositiveInt = 256
    on_bad_image: Literal["skip", "fail"] = "skip"
    max_bad_fraction: Fraction = 0.01
    plugins: list[dict[str, typing.Any]] = []
    """Plugins to import: {"name", "path"} as the spec lists them (`xspec.extend.plugins`)."""
    worker_python: str | None = None
    """The interpreter command of SLURM jobs (`xspec.executors.snapshot`); None: this one."""

    @classmethod
    def of(cls, value: RunSettings | dict | None) -> RunSettings:
        """`value` itself, or a dict of its fields checked (an unknown key is refused)."""
        return value if isinstance(value, cls) else cls.model_validate(value or {})


SlurmTime = Annotated[str | int | None, BeforeValidator(checked_time)]
SbatchValue = str | int | float | bool


class ClusterOptions(XspecModel):
    """SLURM settings for `xspec submit` (flags on the command line override them). The one
    check of an option's value: the spec's `[cluster]` tables and `xspec submit`'s flags are
    both validated by this model (`xspec.executors.slurm.check_options`)."""

    partition: str | None = None
    time: SlurmTime = None
    """A job's time limit: "MM", "HH:MM:SS", "D-HH:MM:SS" or minutes; past it a job requeues
    and resumes."""
    gpus_per_node: PositiveInt | None = None
    nodes: PositiveInt | None = None  # machines per training job (DDP across all their tasks)
    tasks_per_node: PositiveInt | None = None  # default: one per GPU, for DDP
    cpus_per_task: PositiveInt | None = None
    mem_gb: PositiveFloat | None = None
    array_parallelism: PositiveInt | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    max_requeues: NonNegativeInt | None = None
    signal_delay_s: PositiveInt | None = None
    """Seconds before the time limit that SLURM signals a job to save and requeue; default 90,
    less for short limits."""
    additional: dict[str, SbatchValue] | None = None
    """More `#SBATCH --name=value` lines (a true value: the bare flag)."""

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        """What this model refuses in `options` (a plain dict: flags merged over the spec's),
        one line per option, in the spec loader's words (`xspec.spec.wording.describe`)."""
        try:
            cls.model_validate(options)
        except ValidationError as exc:
            lines, allowed = [], ", ".join(sorted(cls.model_fields))
            for error in exc.errors():
                key = error["loc"][0]
                line = (f"unknown slurm option {key!r}; allowed: {allowed}"
                        if error["type"] == "extra_forbidden"
                        else f"slurm option {key!r}: {describe(error)}")
                if line not in lines and not any(seen.startswith(f"slurm option {key!r}:")
                                                 for seen in lines):
                    lines.append(line)
            return lines
        return []


class Cluster(ClusterOptions):
    """Shared settings, with one optional table per node kind: [cluster.clean] etc."""

    def options(self, overrides: dict) -> dict:
        """submitit options: these settings, then the command line's non-empty flags."""
        data = self.model_dump(exclude_none=True)
        return {**data, **{k: v for k, v in overrides.items() if v is not None}}
