"""The study spec: one pydantic model per TOML table.

Every field here holds a single value. Sweeps (a list where a scalar is expected, or
`{zip = "axis", values = [...]}`) are expanded by `xspec.spec.sweep` before validation, so each
expanded variant is an ordinary `Spec`.

The tables that extensions add to are assembled from the registries (`xspec.extend`): the attack
union, the data formats, the `[clean]` defence fields and the `[cluster.<kind>]` tables.
`spec_model()` is the spec with every piece registered so far (plugins included); `Spec` is the
one of the built-ins.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, create_model, field_validator, model_validator

from xspec.extend.registry import (
    ATTACKS, DATA_SOURCES, DEFENCES, LOSS_PARTS, NODE_KINDS, generation, register_attack,
    register_data_source, register_defence, register_loss,
)
from xspec.spec.archs import check_arch, image_size
from xspec.spec.base import (  # noqa: F401  (re-exported: the names tables are written with)
    Fraction, NonNegativeFloat, NonNegativeInt, NotBool, PositiveFloat, PositiveInt, XspecModel,
)
from xspec.spec.evalsets import RetrievalSet, SetName, ZeroShotSet, check_names, evaluate_fields
from xspec.spec.policies import parse_policy

Metric = Literal["top1", "top5", "asr"]
Templates = Literal["clip80"]
MAX_SEED = 2**64 - 1
FASHION_SIZES = {"train": 60_000, "test": 10_000}

register_loss("mmcl", ("image", "text"), "xspec.runtime.objectives:mmcl")
register_loss("ssl", ("image", "text", "image_aug", "text_aug"), "xspec.runtime.objectives:ssl")


def check_objective(value: str) -> str:
    """Registered loss parts joined by "+", each once: "mmcl", "ssl", "mmcl+ssl", ..."""
    parts = value.split("+")
    unknown = [p for p in parts if p not in LOSS_PARTS]
    if unknown or len(set(parts)) != len(parts):
        names = LOSS_PARTS.names()
        more = " or any of them joined by '+'" if len(names) > 2 else ""
        raise ValueError(f"unknown value '{value}'; allowed: {', '.join(names)}, "
                         f"{'+'.join(names[:2])}{more}")
    return value


class Study(XspecModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    """The study's name: its report folder and its rows in the database."""
    seed: NonNegativeInt = 0
    """Every random choice of every run derives from it."""
    notes: str = ""
    plugins: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]] = []
    """Modules that register attacks, defences, ... (docs/EXTENDING.md): `name.py` or `name/`
    beside the spec, else a module on sys.path. Never part of a node's id (their pieces are)."""

    @field_validator("seed")
    @classmethod
    def _fits_64_bits(cls, value: int) -> int:
        if value > MAX_SEED:
            raise ValueError(f"must fit in 64 bits (at most 2**64 - 1 = {MAX_SEED}), got {value}")
        return value

    @field_validator("name")
    @classmethod
    def _not_a_report_file(cls, value: str) -> str:
        if value.lower().endswith(".html") or value.lower().startswith("compare-"):
            raise ValueError(f"'{value}' would collide with the report index or comparison "
                             "folders under reports/; choose a name not ending in .html nor "
                             "starting with compare-")
        return value


@register_data_source("xspec.runtime.data", roles=("pairs", "eval"))
class FashionMnist(XspecModel):
    """Fashion-MNIST from Debian's `dataset-fashion-mnist`, captioned with web-style sentences."""

    format: Literal["fashion_mnist"]
    path: str = "/usr/share/datasets/fashion-mnist"
    split: Literal["train", "test"] = "train"
    size: PositiveInt | None = None


@register_data_source("xspec.runtime.data", roles=("pairs",))
class CsvPairs(XspecModel):
    """Image-caption pairs in the CleanCLIP/CC3M layout; image paths relative to the CSV."""

    format: Literal["csv"]
    path: str
    image_key: str = "image"
    caption_key: str = "caption"
    size: PositiveInt | None = None
    expected_size: PositiveInt | None = Field(None, exclude=True)
    """Pairs the dataset is expected to hold: `xspec plan`'s compute estimate counts it where
    the data is not readable (planning before it is staged). Never part of a node's id."""


@register_data_source("xspec.runtime.data", roles=("pairs",))
class WebDatasetPairs(XspecModel):
    """Image-caption pairs in WebDataset shards, as img2dataset writes them: `path` is a brace
    pattern ("cc3m/{00000..00331}.tar"), a glob or a folder of .tar files; each sample is
    KEY.jpg (or .png/.webp, or `image_ext`) with its caption in KEY.`caption_ext`. A pair's
    identity is its key; pairs are numbered in shard order, then member order."""

    format: Literal["webdataset"]
    path: str
    image_ext: str | None = None
    caption_ext: str = "txt"
    size: PositiveInt | None = None
    expected_size: PositiveInt | None = Field(None, exclude=True)
    """Pairs the dataset is expected to hold: `xspec plan`'s compute estimate counts it where
    the data is not readable (planning before it is staged). Never part of a node's id."""


@register_data_source("xspec.runtime.data", roles=("eval",))
class ImageFolder(XspecModel):
    """One folder per class; `classes` names a class list (fashion_mnist, imagenet1k) or a file."""

    format: Literal["imagefolder"]
    path: str
    classes: str = "imagenet1k"
    size: PositiveInt | None = None


@register_data_source("xspec.runtime.data", roles=("eval",))
class LabelsCsv(XspecModel):
    """A CSV of image paths and integer labels (CleanCLIP's ImageNet validation layout)."""

    format: Literal["labels_csv"]
    path: str
    image_key: str = "image"
    label_key: str = "label"
    classes: str = "imagenet1k"
    size: PositiveInt | None = None


def _union(models: list[type], tag: str) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator=tag)]


def _sources(role: str) -> Any:
    return _union([d.spec for d in DATA_SOURCES if role in d.roles], "format")


PairSource = _sources("pairs")
EvalSource = _sources("eval")


class CleanData(XspecModel):
    """The cleaning set: drawn from the training pool (`from = "train"`) or a separate source."""

    model_config = ConfigDict(populate_by_name=True)
    source: Annotated[Union[Literal["train"], PairSource], Field(alias="from")] = "train"
    size: PositiveInt = 100_000
    overlap: Literal["disjoint", "overlap"] = "disjoint"


class Data(XspecModel):
    train: PairSource
    clean: CleanData = CleanData()
    eval: EvalSource
    templates: Templates = "clip80"
    # Missing or undecodable images: skipped and counted (in status.json) up to this fraction
    # of a dataset, or fatal at the first one.
    on_bad_image: Literal["skip", "fail"] = "skip"
    max_bad_fraction: Fraction = 0.01


class Trigger(XspecModel):
    """BadNet's patch. `cleanclip` is the paper's trigger as its code made it (channel mean plus
    N(0, 1), wrapped modulo 256 by a byte cast: close to uniform noise); `gaussian_per_image` /
    `gaussian_fixed` paste N(0, 1) clamped to [0, 1], fresh per image or one fixed pattern;
    `solid` pastes `color`. docs/FIDELITY.md compares them."""

    size: PositiveInt = 16
    pattern: Literal["cleanclip", "gaussian_per_image", "gaussian_fixed", "solid"] = "cleanclip"
    location: Literal["random", "corner", "four_corners"] = "random"
    color: tuple[Fraction, Fraction, Fraction] = (1.0, 1.0, 0.0)


# How a poisoned (and a triggered evaluation) image reaches the model's size: centre-cropped like
# every clean image, or squashed to a square before the trigger, as the original code does
# (backdoor/utils.py:20; docs/FIDELITY.md). Square images are the same either way.
Resize = Literal["crop", "squash"]


@register_attack("xspec.runtime.attacks.patch:BadNet")
class BadNet(XspecModel):
    kind: Literal["badnet"]
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    resize: Resize = "crop"
    trigger: Trigger = Trigger()


@register_attack("xspec.runtime.attacks.patch:LabelConsistent")
class LabelConsistent(XspecModel):
    """The patch goes on images whose caption already names the target; captions unchanged."""

    kind: Literal["label_consistent"]
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    resize: Resize = "crop"
    trigger: Trigger = Trigger()


@register_attack("xspec.runtime.attacks.whole_image:Blended")
class Blended(XspecModel):
    """(1 - alpha) * image + alpha * noise over the whole image."""

    kind: Literal["blended"]
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    resize: Resize = "crop"
    alpha: Annotated[float, Field(gt=0, lt=1), NotBool] = 0.2
    pattern: Literal["gaussian_fixed", "gaussian_per_image"] = "gaussian_fixed"


@register_attack("xspec.runtime.attacks.whole_image:WaNet")
class WaNet(XspecModel):
    """One fixed, seeded warping field (Nguyen & Tran 2021), the same for every image."""

    kind: Literal["wanet"]
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    resize: Resize = "crop"
    grid: Annotated[int, Field(ge=2), NotBool] = 4
    strength: PositiveFloat = 0.5


@register_attack("xspec.runtime.attacks.whole_image:Sig")
class Sig(XspecModel):
    """A horizontal sinusoidal signal added to the image (Barni et al. 2019)."""

    kind: Literal["sig"]
    target: Annotated[str, Field(min_length=1)]
    poisons: PositiveInt
    resize: Resize = "crop"
    amplitude: Annotated[float, Field(gt=0, le=1), NotBool] = 0.1
    frequency: PositiveFloat = 6.0
    blend: Annotated[float, Field(gt=0, lt=1), NotBool] | None = None
    """None: the signal is added to the image (Barni et al.). A weight b: (1 - b) * image +
    b * signal, as the original code blends it (b = 0.2 with amplitude 60/255)."""


@register_attack("xspec.runtime.attacks.base:NoAttack")
class NoAttack(XspecModel):
    kind: Literal["none"]


Attack = _union([a.spec for a in ATTACKS], "kind")


class StudyOutput(XspecModel):
    """An output of another study, e.g. `{ study = "clip.toml", node = "select" }`: that study's
    node and what it needs are part of this plan and run first, in the same workspace."""

    study: Annotated[str, Field(min_length=1)]
    """The other study's spec file, relative to this spec."""
    node: Annotated[str, Field(min_length=1)] = "select"
    """A node kind of that study (select, pretrain, ...), or a node's name as `xspec plan`
    shows it (select@objective=mmcl)."""
    where: dict[str, str | int | float] = {}
    """Which node of that kind: settings it must have, by short name or dotted key
    ({ objective = "mmcl+ssl", poisons = 3000 }); one node must match."""


class Model(XspecModel):
    arch: Annotated[str, Field(min_length=1)]
    """An open_clip model config name (RN50, ViT-B-32, ...) or one xspec ships (xspec-vit-tiny)."""
    init: str | StudyOutput = "scratch"
    """"scratch", a checkpoint file to start pre-training from (relative to the spec), or
    another study's checkpoint: { study = "other.toml", node = "select" }."""

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        return check_arch(value)


Objective = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*(\+[a-z_][a-z0-9_]*)*$")]


class Training(XspecModel):
    objective: Objective = "mmcl+ssl"
    """mmcl: the CLIP loss; ssl: image-image and text-text InfoNCE on augmentations; or both."""
    mmcl_weight: NonNegativeFloat = 1.0
    ssl_weight: NonNegativeFloat = 1.0
    batch_size: PositiveInt = 128
    """Pairs per optimiser step, over all GPUs of a run."""
    epochs: PositiveInt = 20
    lr: PositiveFloat = 1e-5
    """Peak AdamW learning rate: linear warm-up, then cosine to 0."""
    weight_decay: NonNegativeFloat = 0.1
    """AdamW weight decay on weights with ndim >= 2 (not biases, norms, logit_scale)."""
    warmup_steps: NonNegativeInt = 50
    schedule: Literal["paper", "cleanclip"] = "paper"
    """paper: warm-up from the first step, then cosine to 0 over the run. cleanclip: the original
    code's step index (epoch x steps per epoch + batch, epochs from 1), which starts past any
    warm-up shorter than an epoch and runs the cosine one epoch late (docs/FIDELITY.md)."""
    text_augment: Literal["per_epoch", "once"] = "per_epoch"
    """EDA caption augmentation for SSL: drawn afresh every epoch, or once per pair for the whole
    run, as the original code does (it augments every caption once when loading)."""

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, value: str) -> str:
        return check_objective(value)

    @model_validator(mode="after")
    def _weights_match_objective(self):
        if "mmcl" in self.objective.split("+") and self.mmcl_weight == 0:
            raise ValueError(f"objective '{self.objective}' uses mmcl but mmcl_weight is 0")
        if "ssl" in self.objective.split("+") and self.ssl_weight == 0:
            raise ValueError(f"objective '{self.objective}' uses ssl but ssl_weight is 0")
        return self


class Pretrain(Training):
    objective: Objective = "mmcl"
    epochs: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    warmup_steps: NonNegativeInt = 10_000
    select: str = "best_accuracy"
    """The checkpoint cleaning starts from: best_accuracy, final, epoch(N), or
    match_accuracy(<objective>) (the epoch whose accuracy is closest to that run's best)."""

    @field_validator("select")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        parse_policy(value)
        return value


def _deep_cluster_config(value: dict, fingerprint) -> dict:
    if isinstance(value["labels"], str) and value["labels"] != "kmeans":
        value = {**value, "labels": fingerprint(value["labels"], "clean.deep_cluster.labels")}
    return value


class DeepCluster(XspecModel):
    """Paper section 5: each epoch, spherical k-means on the cleaning set's image embeddings
    (or labels from a CSV of `index,label` made by a stronger model), a fresh linear head on
    the image features, and cross-entropy on the pseudo-labels with `weight`."""

    k: PositiveInt = 1000
    weight: PositiveFloat = 1.0
    labels: str | StudyOutput = "kmeans"
    """"kmeans"; a CSV of index,label for the cleaning pool; or a stronger model from another
    study ({ study = "other.toml", node = "select" }), whose zero-shot predictions over the
    evaluation classes a pseudo_labels node writes."""
    iterations: PositiveInt = 20
    assign: Literal["epoch", "online"] = "epoch"
    """k-means labels: each image's cluster from the epoch-start embedding (Caron et al.), or,
    as the original code does, the nearest epoch-start centroid of the batch's current
    embedding, recomputed at every step."""
    head_reset: Literal["new_labels", "every_epoch"] = "new_labels"
    """Re-initialise the linear head whenever labels are recomputed (the paper's text; with
    labels from a file: once, as the original code does), or at every epoch regardless."""


register_defence("deep_cluster", "xspec.runtime.ablations:deep_cluster",
                 annotation=DeepCluster | None, default=None, config=_deep_cluster_config,
                 origin="xspec.spec.schema")


class ShrinkPerturb(XspecModel):
    """theta <- shrink * theta + perturb * eps for every (shrink, perturb) candidate; cleaning
    starts from the most accurate candidate whose ASR is at most `asr_threshold`."""

    shrink: list[Annotated[float, Field(gt=0, le=1), NotBool]]
    perturb: list[NonNegativeFloat]
    noise: Literal["gaussian", "init"] = "gaussian"
    asr_threshold: Fraction = 0.05

    @field_validator("shrink", "perturb")
    @classmethod
    def _not_empty(cls, values: list[float]) -> list[float]:
        if not values:
            raise ValueError("give at least one value")
        return values


register_defence("shrink_perturb", None, annotation=ShrinkPerturb | None, default=None,
                 start="xspec.compiler.kinds:shrink_perturb_node", origin="xspec.spec.schema")


class Clean(Training):
    """Cleaning; the registered defences (`xspec.extend.DEFENCES`) add their fields to it."""

    poisons: NonNegativeInt = 0
    """Poisoned pairs left inside the cleaning set (non-ideal cleaning)."""
    poison_source: Literal["fresh", "pretrain"] = "fresh"
    """fresh: `poisons` pairs of the cleaning set get the trigger and a target caption, the set
    keeps its size (the original code's 100K with 5 or 10 poisons); pretrain: copies of
    pre-training poisons are added to the set."""
    optimizer: Literal["fresh", "pretrain"] = "fresh"
    """fresh: a new AdamW. pretrain: the pre-training checkpoint's AdamW state, as the original
    code loads it; PyTorch then also restores that run's weight decay, so `weight_decay` here
    has no effect (docs/FIDELITY.md)."""
    start: StudyOutput | None = None
    """Clean a model another study trained ({ study = "other.toml", node = "select@..." }: a
    select, shrink_perturb, pretrain or clean node) instead of pre-training one here; [model]
    and [pretrain] are then left out, and [attack] and data.train must be that study's."""


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
    # Pre-training keeps every epoch's weights (selection needs them); cleaning keeps the
    # final epoch's unless "all" (an RN50 grid of 85 learning rates x 20 epochs is ~700 GB).
    keep_checkpoints: Literal["final", "all"] = "final"


class ClusterOptions(XspecModel):
    """SLURM settings for `xspec submit` (flags on the command line override them)."""

    partition: str | None = None
    time: str | None = None  # e.g. "24:00:00"; past it a job requeues and resumes
    gpus_per_node: PositiveInt | None = None
    tasks_per_node: PositiveInt | None = None  # default: one per GPU, for DDP
    cpus_per_task: PositiveInt | None = None
    mem_gb: PositiveFloat | None = None
    array_parallelism: PositiveInt | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    max_requeues: NonNegativeInt | None = None
    additional: dict[str, str] | None = None


class Cluster(ClusterOptions):
    """Shared settings, with one optional table per node kind: [cluster.clean] etc."""

    def options(self, overrides: dict) -> dict:
        """submitit options: these settings, then the command line's non-empty flags."""
        data = self.model_dump(exclude_none=True)
        return {**data, **{k: v for k, v in overrides.items() if v is not None}}


class SpecBase(XspecModel):
    """A study: one TOML file."""

    study: Study
    data: Data
    attack: NoAttack
    model: Model | None  # None only where clean.start names another study's model
    pretrain: Pretrain | None
    clean: Clean | None = None
    evaluate: Evaluate = Evaluate()
    report: Report = Report()
    run: Run = Run()
    cluster: Cluster = Cluster()

    @model_validator(mode="before")
    @classmethod
    def _started_elsewhere(cls, data):
        """With clean.start, no [model] or [pretrain]: the model comes from another study."""
        clean = data.get("clean") if isinstance(data, dict) else None
        if isinstance(clean, dict) and clean.get("start") is not None:
            for table in ("model", "pretrain"):
                if table in data:
                    raise ValueError(f"{table}: not used where clean.start names another "
                                     "study's model; leave it out")
                data = {**data, table: None}
        return data

    @model_validator(mode="after")
    def _metrics_cover_selection(self):
        policy = parse_policy(self.pretrain.select).name if self.pretrain else None
        needs = []
        if policy in ("best_accuracy", "match_accuracy"):
            needs.append(("top1", f"pretrain.select = '{self.pretrain.select}'"))
        if self.clean is not None and getattr(self.clean, "shrink_perturb", None) is not None:
            needs.append(("top1", "clean.shrink_perturb"))
            if self.attack.kind != "none":
                needs.append(("asr", "clean.shrink_perturb"))
        for metric, reason in needs:
            if metric not in self.evaluate.metrics:
                raise ValueError(f"evaluate.metrics must include '{metric}': {reason} "
                                 "selects by it")
        return self

    @model_validator(mode="after")
    def _attack_fits_data(self):
        poisons = getattr(self.attack, "poisons", None)
        if poisons is None:
            return self
        train = self.data.train
        known = getattr(train, "size", None) if train.format != "fashion_mnist" else min(
            train.size or FASHION_SIZES[train.split], FASHION_SIZES[train.split])
        if known is not None and poisons > known:
            raise ValueError(f"attack.poisons = {self.attack.poisons} exceeds the "
                             f"{known} training pairs (data.train)")
        trigger = getattr(self.attack, "trigger", None)
        side = image_size(self.model.arch) if self.model else None
        if trigger is not None and side is not None and trigger.size > side:
            raise ValueError(f"attack.trigger.size = {trigger.size} exceeds the "
                             f"{side}x{side} images of model.arch '{self.model.arch}'")
        return self

    @model_validator(mode="after")
    def _epoch_policy_in_range(self):
        epoch = parse_policy(self.pretrain.select).epoch if self.pretrain else None
        if epoch is not None and epoch > self.pretrain.epochs:
            raise ValueError(
                f"pretrain.select = '{self.pretrain.select}' is past pretrain.epochs = "
                f"{self.pretrain.epochs}"
            )
        return self


_BUILT: dict[tuple[int, ...], type] = {}


def spec_model() -> type[SpecBase]:
    """The spec model with every attack, data format, defence and node kind registered so far."""
    from xspec.extend.plugins import load_builtins

    load_builtins()
    key = generation()
    if key not in _BUILT:
        _BUILT.clear()
        _BUILT[key] = _build()
    return _BUILT[key]


def _build() -> type[SpecBase]:
    pair = _sources("pairs")
    clean_data = create_model(
        "CleanData", __base__=CleanData, __doc__=CleanData.__doc__,
        source=(Annotated[Union[Literal["train"], pair], Field(alias="from")], "train"))
    data = create_model("Data", __base__=Data, __doc__=Data.__doc__, train=(pair, ...),
                        clean=(clean_data, clean_data()), eval=(_sources("eval"), ...))
    clean = create_model("Clean", __base__=Clean, __doc__=Clean.__doc__, **{
        d.name: (d.annotation, Field(d.default, description=d.description or None))
        for d in DEFENCES})
    cluster = create_model("Cluster", __base__=Cluster, __doc__=Cluster.__doc__, **{
        k.name: (ClusterOptions | None, None) for k in NODE_KINDS if k.cluster})
    evaluate = create_model("Evaluate", __base__=Evaluate, __doc__=Evaluate.__doc__,
                            **evaluate_fields(_sources("eval"), pair))
    return create_model("Spec", __base__=SpecBase, __doc__=SpecBase.__doc__,
                        data=(data, ...), evaluate=(evaluate, evaluate()), attack=(_union([a.spec for a in ATTACKS], "kind"), ...),
                        clean=(clean | None, None), cluster=(cluster, cluster()))


Spec = spec_model()
