"""Typed node configs: each node kind's config is one of these models, built by the compiler,
dumped to node.json and read back as the same class by the node process (`ctx.cfg`).

The models reuse the spec's tables (`xspec.spec.tables`), so an allowed value or a default is
declared once. The attack and the data sources are discriminated unions of the registered
models (plugins included): `config_models()` builds the classes for what is registered now,
as `spec_model()` does for the spec.

What enters a node's id is the model's dump under one rule (`xspec.spec.base.id_dump`): every
field, except one marked `OmitAtDefault` while it holds its default. Fields added after ids were
in use carry the marker, so adding one never moves an existing id; the full dump (node.json)
keeps every field, so a changed default is still seen (`xspec.store.reuse`).
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    ConfigDict, Field, ValidationError, create_model, model_serializer, model_validator,
)

from xspec.compiler.detect import detect_config
from xspec.errors import CompileError
from xspec.extend.plugins import for_registered
from xspec.extend.registry import ATTACKS, defences_of
from xspec.spec.base import (
    EVAL, EVALUATION, TEMPLATES, TRAIN, NonNegativeInt, OmitAtDefault, Seed, XspecModel,
    tagged_union,
)
from xspec.spec.fidelity import SSL_ONLY
from xspec.spec.retrain import Retrain
from xspec.spec.tables.data import CleanData, Templates, sources
from xspec.spec.tables.defences import DeepCluster, ShrinkPerturb
from xspec.spec.tables.settings import Metric
from xspec.spec.tables.training import Clean, Training

Plugins = Annotated[dict[str, str], OmitAtDefault]
"""{"attack:kind": version} of the plugin pieces a node uses that declare a version."""


class FileRef(XspecModel):
    """A file a node reads, identified by path, size and mtime so that replacing it changes the
    id; `missing` where it did not exist when the plan was compiled."""

    path: str
    bytes: Annotated[NonNegativeInt | None, OmitAtDefault] = None
    mtime_ns: Annotated[int | None, OmitAtDefault] = None
    missing: Annotated[bool, OmitAtDefault] = False


class InputRef(XspecModel):
    """What a dependency of `kind` hands on (another study's node, a pseudo_labels node)."""

    input: str


class EvalConfig(XspecModel):
    source: Annotated[Any, EVAL]
    templates: Annotated[Templates, TEMPLATES]
    metrics: list[Metric]
    folder_labels: Annotated[Literal["by_name"] | None, OmitAtDefault] = None
    """Set for ImageFolder evaluation sets (labels from folder names): only in the id."""
    primary: Annotated[str, OmitAtDefault] = "eval"
    """The primary set's name in the results (`evaluate.primary`)."""
    sets: Annotated[dict[str, dict[str, Any]], OmitAtDefault] = {}
    """More zero-shot sets (`xspec.compiler.evalsets`): source, subset, templates, probe."""
    retrieval: Annotated[dict[str, dict[str, Any]], OmitAtDefault] = {}
    """Image-caption retrieval sets: their sources."""


class Shared(XspecModel):
    """What every node that evaluates carries: evaluation and seed. The attack is the poison
    node's config alone; its dependants read it from there (`runtime.handoffs`)."""

    eval: Annotated[EvalConfig, EVALUATION]
    seed: Seed
    plugins: Plugins = {}


class SelectConfig(XspecModel):
    policy: str
    """The policy's name, or its whole text when it takes no objective (`epoch(5)`)."""
    reference: Annotated[str | None, OmitAtDefault] = None
    """The objective of the run whose accuracy `match_accuracy`-like policies compare with."""
    plugins: Plugins = {}
    """{"policy:<name>": version} when the policy declares a version."""


class ShrinkPerturbConfig(ShrinkPerturb, Shared):
    pass


class PoisonConfig(XspecModel):
    """The attack and the training pairs it poisons. Its dump keeps the attack's fields at the
    top level (`kind`, `target`, ...), as poison ids have always been made."""

    attack: Any
    train: Annotated[Any, TRAIN]
    seed: Seed
    plugins: Plugins = {}

    @model_validator(mode="before")
    @classmethod
    def _nest_attack(cls, data):
        if isinstance(data, dict) and "attack" not in data:
            own = ("train", "seed", "plugins")
            data = {**{k: data[k] for k in own if k in data},
                    "attack": {k: v for k, v in data.items() if k not in own}}
        return data

    @model_serializer(mode="wrap")
    def _serialize(self, handler, info):
        data = XspecModel._serialize(self, handler, info)
        return {**data.pop("attack"), **data} if isinstance(data, dict) else data


class ModelConfig(XspecModel):
    arch: str
    init: Union[Literal["scratch"], FileRef, InputRef] = "scratch"
    """"scratch", a weights file, or the checkpoint a dependency hands on (another study's)."""
    arch_sha256: Annotated[str | None, OmitAtDefault] = None
    """The content of an architecture given as a config file: it, not the path, decides."""


class OldDictReads:
    """`config["lr"]`, `config.get("mmcl_weight", 1.0)` and `"lr" in config` on a typed node
    config, for defences written when `setup.config` was node.json's dict: they read the JSON
    value (a table as a dict) and warn once; new code reads attributes (`config.lr`)."""

    def _json(self, key: str):
        warnings.warn(f"setup.config is the node's typed config ({type(self).__name__}); read "
                      f"config.{key}, not config[{key!r}] (docs/EXTENDING.md)",
                      DeprecationWarning, stacklevel=3)
        return self.model_dump(mode="json", by_alias=True)

    def __getitem__(self, key: str):
        return self._json(key)[key]

    def get(self, key: str, default=None):
        return self._json(key).get(key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._json(key)


class TrainingConfig(OldDictReads, Training, Shared):
    """A training run's fields as `[pretrain]`/`[clean]` declare them."""

    @model_validator(mode="before")
    @classmethod
    def _no_text_augment_without_ssl(cls, data):
        """Without SSL nothing is augmented: `text_augment` and the SSL-only fidelity options
        then say nothing."""
        if isinstance(data, dict) and "ssl" not in str(data.get("objective", "")).split("+"):
            data = {k: v for k, v in data.items() if k not in ("text_augment",) + SSL_ONLY}
        return data

    @property
    def continues_optimizer(self) -> bool:
        """Start from the AdamW state of the pre-training run (clean.optimizer = "pretrain")."""
        return False


class PretrainConfig(TrainingConfig):
    """`[pretrain]`'s fields, and one field per `[pretrain]` defence with behaviour (RoCLIP,
    ...; at its "off" default it stays out of the id)."""

    model: ModelConfig
    train: Annotated[Any, TRAIN]
    save_optimizer: Annotated[bool, OmitAtDefault] = False
    """Keep each epoch's AdamW state: set on a pre-training run a cleaning run continues."""
    drop: Annotated[Retrain | None, OmitAtDefault] = None
    """Detect-then-retrain: the pairs a detect dependency scored highest are left out."""


class CleanDataConfig(CleanData):
    source: Annotated[Any, Field(alias="from")]
    """The pool the cleaning set is drawn from ("train" resolved to the training pairs)."""


class DeepClusterConfig(DeepCluster):
    """`clean.deep_cluster` as a clean node's config holds it: labels "kmeans", a labels CSV
    (`FileRef`) or the labels a pseudo_labels dependency writes (`InputRef`)."""

    labels: Union[Literal["kmeans"], FileRef, InputRef] = "kmeans"


class CleanConfig(Clean, TrainingConfig):
    """`[clean]`'s fields, and one field per registered defence with behaviour (at its "off"
    default it stays out of the id). `start` is resolved into the node's dependencies."""

    model_config = ConfigDict(populate_by_name=True)
    data: CleanDataConfig
    start: Annotated[None, OmitAtDefault] = None
    poison_source: Annotated[Literal["fresh", "pretrain"] | None, OmitAtDefault] = None
    """Where the poisons left in the cleaning set come from; None without such poisons."""
    deep_cluster: Annotated[DeepClusterConfig | None, OmitAtDefault] = None

    @model_validator(mode="before")
    @classmethod
    def _poison_source_with_poisons(cls, data):
        if isinstance(data, dict):
            if not data.get("poisons"):
                data = {k: v for k, v in data.items() if k != "poison_source"}
            elif data.get("poison_source") is None:
                data = {**data, "poison_source": "fresh"}
        return data

    @property
    def continues_optimizer(self) -> bool:
        return self.optimizer == "pretrain"


class PseudoLabelsConfig(XspecModel):
    data: CleanDataConfig
    classes: Annotated[Any, EVAL]
    """The evaluation source whose classes the labels are over."""
    templates: Annotated[Templates, TEMPLATES]
    seed: Seed
    input: str
    """The kind of the dependency whose checkpoint labels (another study's node)."""


@for_registered
def config_models() -> dict[str, type[XspecModel]]:
    """{kind: config model} of the built-in kinds, for every attack, data format and defence
    registered so far (plugins included)."""
    attack = tagged_union([a.spec for a in ATTACKS], "kind")
    pairs, evals = sources("pairs"), sources("eval")
    evaluation = create_model("EvalConfig", __base__=EvalConfig,
                              source=(Annotated[evals, EVAL], ...))
    shared = {"eval": (Annotated[evaluation, EVALUATION], ...)}
    data = create_model("CleanDataConfig", __base__=CleanDataConfig,
                        source=(Annotated[pairs, Field(alias="from")], ...))
    defences = {table: {d.name: (Annotated[d.annotation if d.config is None else Any,
                                           OmitAtDefault], d.default)
                        for d in defences_of(table)
                        if d.behaviour is not None and d.name != "deep_cluster"}
                for table in ("pretrain", "clean")}
    return {
        "poison": create_model("PoisonConfig", __base__=PoisonConfig, attack=(attack, ...),
                               train=(Annotated[pairs, TRAIN], ...)),
        "pretrain": create_model("PretrainConfig", __base__=PretrainConfig,
                                 train=(Annotated[pairs, TRAIN], ...),
                                 **shared, **defences["pretrain"]),
        "select": SelectConfig,
        "detect": detect_config(pairs),
        "shrink_perturb": create_model("ShrinkPerturbConfig", __base__=ShrinkPerturbConfig,
                                       **shared),
        "pseudo_labels": create_model("PseudoLabelsConfig", __base__=PseudoLabelsConfig,
                                      data=(data, ...), classes=(Annotated[evals, EVAL], ...)),
        "clean": create_model("CleanConfig", __base__=CleanConfig, data=(data, ...), **shared,
                              **defences["clean"]),
    }


def poison_config() -> type[XspecModel]:
    return config_models()["poison"]


def pretrain_config() -> type[XspecModel]:
    return config_models()["pretrain"]


def shrink_perturb_config() -> type[XspecModel]:
    return config_models()["shrink_perturb"]


def pseudo_labels_config() -> type[XspecModel]:
    return config_models()["pseudo_labels"]


def detect_config_now() -> type[XspecModel]:
    return config_models()["detect"]


def clean_config() -> type[XspecModel]:
    return config_models()["clean"]


def model_in(annotation: Any) -> type | None:
    """The config model inside a field's annotation (`Model`, `Model | None`, `Annotated`)."""
    if isinstance(annotation, type) and issubclass(annotation, XspecModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def fields_of(kind: str, model: type, top: bool) -> dict:
    """A model's fields by name and alias; a poison config's top level also holds the attack's
    fields (its dump flattens them)."""
    fields = {**model.model_fields,
              **{f.alias: f for f in model.model_fields.values() if f.alias}}
    if kind == "poison" and top:
        for attack in ATTACKS:
            fields = {**attack.spec.model_fields, **fields}
    return fields


def _text(default: Any) -> str | None:
    if default is None:
        return "off"  # a table or setting that is off at its default
    if isinstance(default, (dict, list)):
        return None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, (int, float)):
        short = f"{default:g}"
        return short if float(short) == default else repr(default)
    return str(default)


def left_out(key: str) -> str | None:
    """What a node's lineage key stands for where the node's id left it out: the default of the
    `OmitAtDefault` field it names, as text ("clean.poisons" -> "0"); "off" for a field inside
    a marked table that is off ("clean.deep_cluster.k"); None where no marked field left it
    out ("clean.lr"). What reports show for a missing key (`xspec.reports.load`)."""
    kind, _, rest = key.partition(".")
    model = config_models().get(kind)
    parts = rest.split(".")
    for depth, part in enumerate(parts):
        field = fields_of(kind, model, depth == 0).get(part) if model is not None else None
        if field is None:
            return None
        if any(m is OmitAtDefault for m in field.metadata):
            if depth < len(parts) - 1:
                return "off"
            return _text(field.default)
        model = model_in(field.annotation)
    return None


def typed(model: type[XspecModel], config: Any, where: str) -> XspecModel:
    """`config` (a dict, or keyword values) as `model`; a mismatch is a compiler or plugin bug,
    reported with the key."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise CompileError(f"{where}: config.{key}: {error['msg']} (node config and its "
                           f"model {model.__name__} disagree)") from None
