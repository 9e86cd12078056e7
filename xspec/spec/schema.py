"""The study spec: one pydantic model per TOML table (`xspec.spec.tables`), assembled here.

Every field here holds a single value. Sweeps (a list where a scalar is expected, or
`{zip = "axis", values = [...]}`) are expanded by `xspec.spec.sweep` before validation, so each
expanded variant is an ordinary `Spec`.

The tables that extensions add to are assembled from the registries (`xspec.extend`): the attack
union, the data formats, the `[clean]` defence fields and the `[cluster.<kind>]` tables.
`spec_model()` is the spec with every piece registered so far (plugins included); `Spec` is the
one of the built-ins. The tables' names are re-exported here.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, create_model, model_validator

from xspec.extend.plugins import for_registered
from xspec.extend.registry import (
    ATTACKS, DEFENCES, METRICS, NODE_KINDS, POLICIES, defences_of,
)
from xspec.spec.archs import image_size
from xspec.spec.base import (  # noqa: F401  (re-exported, as are the tables' names below)
    Fraction, NonNegativeFloat, NonNegativeInt, NotBool, PositiveFloat, PositiveInt, XspecModel,
    tagged_union,
)
from xspec.spec.evalsets import evaluate_fields
from xspec.spec.policies import parse_policy
from xspec.spec.tables.attacks import (  # noqa: F401
    Attack, BadNet, Blended, LabelConsistent, NoAttack, Resize, Sig, Trigger, WaNet,
)
from xspec.spec.tables.data import (  # noqa: F401
    FASHION_SIZES, CleanData, CsvPairs, Data, EvalSource, FashionMnist, ImageFolder, LabelsCsv,
    PairSource, Templates, WebDatasetPairs, sources,
)
from xspec.spec.tables.defences import DeepCluster, ShrinkPerturb  # noqa: F401
from xspec.spec.tables.model import Model, StudyOutput  # noqa: F401
from xspec.spec.tables.settings import (  # noqa: F401
    Cluster, ClusterOptions, Evaluate, Metric, Report, ReportPlot, ReportTable, Run,
)
from xspec.spec.tables.study import MAX_SEED, Study  # noqa: F401
from xspec.spec.tables.training import (  # noqa: F401
    Clean, Objective, Pretrain, Training, check_objective,
)
from xspec.spec.decree import Decree
from xspec.spec.detect import Detect, detect_model  # noqa: F401


class SpecBase(XspecModel):
    """A study: one TOML file."""

    study: Study
    data: Data
    attack: NoAttack
    model: Model | None  # None only where clean.start names another study's model
    pretrain: Pretrain | None
    clean: Clean | None = None
    detect: Detect | None = None
    decree: Decree | None = None
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
        policy = POLICIES.get(parse_policy(self.pretrain.select).name) if self.pretrain else None
        needs = [(need, f"pretrain.select = '{self.pretrain.select}'")
                 for need in (policy.needs if policy else ()) if need in METRICS]
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
    def _gpu_decode_on_cuda(self):
        """decode = "nvjpeg" decodes on the CUDA device in the training process."""
        sources = [("train", self.data.train), ("clean.from", self.data.clean.source),
                   ("eval", self.data.eval)]
        for name, source in sources:
            if getattr(source, "decode", None) != "nvjpeg":
                continue
            if self.run.device == "cpu":
                raise ValueError(f'data.{name}.decode = "nvjpeg" decodes on a CUDA device; '
                                 'run.device = "cpu" has none')
            if self.run.workers > 0:
                raise ValueError(f'data.{name}.decode = "nvjpeg" decodes on the device in the '
                                 'training process: set run.workers = 0')
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


@for_registered
def spec_model() -> type[SpecBase]:
    """The spec model with every attack, data format, defence and node kind registered so far."""
    pair = sources("pairs")
    clean_data = create_model(
        "CleanData", __base__=CleanData, __doc__=CleanData.__doc__,
        source=(Annotated[Union[Literal["train"], pair], Field(alias="from")], "train"))
    data = create_model("Data", __base__=Data, __doc__=Data.__doc__, train=(pair, ...),
                        clean=(clean_data, clean_data()), eval=(sources("eval"), ...))
    clean, pretrain = (create_model(base.__name__, __base__=base, __doc__=base.__doc__, **{
        d.name: (d.annotation, Field(d.default, description=d.description or None))
        for d in defences_of(table)})
        for base, table in ((Clean, "clean"), (Pretrain, "pretrain")))
    cluster = create_model("Cluster", __base__=Cluster, __doc__=Cluster.__doc__, **{
        k.name: (ClusterOptions | None, None) for k in NODE_KINDS if k.cluster})
    evaluate = create_model("Evaluate", __base__=Evaluate, __doc__=Evaluate.__doc__,
                            **evaluate_fields(sources("eval"), pair))
    return create_model("Spec", __base__=SpecBase, __doc__=SpecBase.__doc__,
                        data=(data, ...), evaluate=(evaluate, evaluate()), attack=(tagged_union([a.spec for a in ATTACKS], "kind"), ...),
                        clean=(clean | None, None), cluster=(cluster, cluster()),
                        pretrain=(pretrain | None, ...),
                        detect=(detect_model() | None, None))


Spec = spec_model()
