"""One registry per extension point, shared by the compiler (spec fields, node kinds) and the
runtime (behaviour). Nothing here imports torch: behaviour is named by a "module:attr" string
or given as an object, and resolved only in the node process that needs it.

A piece registers itself when its module is imported: built-ins from `xspec.spec.schema`,
`xspec.compiler.kinds` and every module of `xspec.builtin`; plugins from `[study] plugins` or
the `xspec.plugins` entry-point group (`xspec.extend.plugins`).
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from xspec.errors import XspecError
from xspec.extend.pieces import Pieces, Term  # noqa: F401  (re-exported)

E = TypeVar("E")


class RegistryError(XspecError):
    """A piece registered twice, or a name nobody registered."""


def resolve(ref: Any) -> Any:
    """A "package.module:attr.sub" string imported now, or the object itself."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    value = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        value = getattr(value, part)
    return value


class Registry(Generic[E]):
    """name -> entry. A second registration of a name fails unless it comes from the module that
    made the first (a plugin imported twice replaces itself)."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, E] = {}
        self.generation = 0

    def add(self, name: str, entry: E) -> E:
        old = self._entries.get(name)
        if old is not None and old.origin != entry.origin:
            raise RegistryError(f"{self.what} {name!r} is already registered by {old.origin}; "
                                f"{entry.origin} cannot register it again")
        self._entries[name] = entry
        self.generation += 1
        return entry

    def get(self, name: str, where: str | None = None) -> E:
        if name not in self._entries:
            raise RegistryError(f"{where or self.what}: unknown {self.what} {name!r}; allowed: "
                                f"{', '.join(self.names())}")
        return self._entries[name]

    def snapshot(self) -> dict[str, E]:
        return dict(self._entries)

    def restore(self, entries: dict[str, E]) -> None:
        """Back to a snapshot (tests that load plugins undo them)."""
        self._entries = dict(entries)
        self.generation += 1

    def find(self, name: str) -> E | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


def tag_of(model: type, key: str) -> str:
    """The value of a tagged model's `Literal` tag field (`kind`, `format`)."""
    annotation = model.model_fields[key].annotation if key in getattr(
        model, "model_fields", {}) else None
    values = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal \
        else ()
    if len(values) != 1:
        raise RegistryError(f"{model.__name__}.{key} must be Literal['<name>'] with one value")
    return values[0]


@dataclass(frozen=True)
class Attack:
    """`[attack] kind = ...`: `spec` is its table (a model tagged by `kind`); `behaviour(spec,
    seed)` builds the object the runtime poisons with (see `xspec.runtime.attacks.base`)."""

    kind: str
    spec: type
    behaviour: Any
    version: str | None
    origin: str
    upstream: Any = None
    """Optional, compiler side (a callable or "module:attr"): `(builder, spec) -> (attack,
    nodes)` adds the nodes the attack needs before poisoning (BadCLIP's trigger optimisation)
    and returns the attack table to use (naming them) and the nodes the poison node depends on."""


@dataclass(frozen=True)
class DataSource:
    """`format = ...` of a data table: `roles` says where it may appear ("pairs" for train and
    clean, "eval" for eval); `behaviour` is a module with `open_pairs(cfg, size, on_bad_image)`,
    `pair_captions(cfg)` and/or `open_eval(cfg, size, on_bad_image)`."""

    format: str
    spec: type
    roles: tuple[str, ...]
    behaviour: Any
    version: str | None
    origin: str


@dataclass(frozen=True)
class LossPart:
    """A part of an objective ("mmcl+ssl" is two parts): `behaviour(features, logit_scale)`
    returns a scalar tensor; `views` are the feature views it reads."""

    name: str
    views: tuple[str, ...]
    behaviour: Any
    version: str | None
    origin: str


@dataclass(frozen=True)
class Policy:
    """How a checkpoint is picked from a run's evaluated epochs, by the runtime (a select node:
    `pretrain.select = "<name>"`, `scope` "pretrain") and by the report (which cleaned model a
    practitioner keeps: `scope` "clean"); see `xspec.policies`. `arg` is None (no argument),
    "int" (`epoch(5)`) or "objective" (`match_accuracy(mmcl)`: the compiler adds the select node
    of that objective's run as a dependency). `behaviour(rows, arg, ctx) -> epoch | None`:
    `rows` are the run's evaluated epochs, oldest first, each {"epoch", "top1", "asr", every
    other metric, "mmcl" (training loss), "heldout_mmcl"}. `better` orders the picks of several
    runs: "top1" (highest top-1, then lowest ASR) or a metric name with "min:"/"max:"."""

    name: str
    arg: str | None
    behaviour: Any
    origin: str
    version: str | None = None
    scope: tuple[str, ...] = ("pretrain",)
    better: str = "top1"
    label: str = ""
    needs: tuple[str, ...] = ("top1",)


@dataclass(frozen=True)
class Metric:
    """An evaluation metric: logged per evaluation (split "eval") next to top1, named in
    `evaluate.metrics`, in DuckDB and the report. `needs` names what `behaviour(view)` reads of
    its `xspec.runtime.evaluate.EvalView` (see NEEDS). With `reduce="sum"` it is called per
    batch and returns (hits, n): the value is sum(hits) / sum(n) over batches and ranks; with
    `reduce="whole"` it is called once on the whole set's view and returns (value, n)."""

    name: str
    needs: tuple[str, ...]
    behaviour: Any
    reduce: str
    version: str | None
    origin: str
    higher_is_better: bool = True
    description: str = ""

    @property
    def triggered(self) -> bool:
        """Needs the triggered images (and so a target): absent without an attack."""
        return bool({"triggered_logits", "triggered_embeddings", "target_index"}
                    & set(self.needs))


NEEDS = ("clean_logits", "triggered_logits", "embeddings", "triggered_embeddings", "labels",
         "target_index", "classes", "manifest")


@dataclass(frozen=True)
class Defence:
    """A key of `[clean]` that changes how cleaning trains. `annotation` and `default` declare the
    spec field; the defence is on when its value differs from `default`, and only then enters
    the clean node's config (so adding a defence never changes existing ids).

    `behaviour(value, setup) -> Pieces` runs in the clean node (value: the field's value, a
    model re-validated from node.json where the field is a model). `start(plan, spec, value,
    start_node) -> Node` (optional, compiler side) puts a node between selection and cleaning,
    as shrink-and-perturb does. `config(value, fingerprint) -> JSON` (optional) is what the
    node's config holds instead of the plain dump, e.g. a file's fingerprint."""

    name: str
    annotation: Any
    default: Any
    behaviour: Any
    start: Callable | None
    config: Callable | None
    version: str | None
    origin: str
    description: str = ""
    packable: bool = True
    """False: a node with this defence on trains alone, never in a pack (`[run] pack`): it
    replaces the batches its siblings would share."""
    table: str = "clean"
    """The spec table the field belongs to: "clean" (cleaning) or "pretrain" (a defence while
    pre-training on poisoned data, e.g. RoCLIP; its node is the pretrain node)."""
    views: Any = ()
    """Feature views the defence reads beyond its objective's ("image_aug", "text_aug"): a
    tuple, or a function of the field's value returning a set."""

    def active(self, value: Any) -> bool:
        return value != self.default

    def needed_views(self, value: Any) -> set[str]:
        return set(self.views(value) if callable(self.views) else self.views)


@dataclass(frozen=True)
class NodeKind:
    """A kind of node in the DAG: `order` sorts kinds (a dependency always sorts first), `stage`
    is its stage function (`fn(ctx)`, runtime side), `trains` marks kinds that get GPUs, DDP
    ranks and a progress bar of `epochs`, `cluster` gives it a `[cluster.<kind>]` table,
    `label` is how reports and `xspec plan` name it, and `config` (optional) is the model of
    its resolved config (or its "module:attr", or a function returning the model): the
    compiler builds each node's config as it, node.json holds its dump and the stage gets it
    back typed (`ctx.cfg`). `version` enters the id of every node of the kind: bump it when
    the stage computes something else for the same config (its dependants' ids follow)."""

    name: str
    order: float
    stage: Any
    trains: bool = False
    cluster: bool = True
    label: str = ""
    origin: str = ""
    config: Any = None
    version: str = "2"

    def config_model(self) -> type | None:
        """The model of this kind's configs, for what is registered now; None without one."""
        if self.config is None:
            return None
        model = resolve(self.config)
        return model if isinstance(model, type) else model()


ATTACKS: Registry[Attack] = Registry("attack kind")
DATA_SOURCES: Registry[DataSource] = Registry("data format")
LOSS_PARTS: Registry[LossPart] = Registry("loss part")
POLICIES: Registry[Policy] = Registry("selection policy")
DEFENCES: Registry[Defence] = Registry("cleaning defence")
NODE_KINDS: Registry[NodeKind] = Registry("node kind")
METRICS: Registry[Metric] = Registry("metric")
DETECTORS: Registry[Any] = Registry("detector")  # entries: xspec.extend.detectors.Detector
ALL = (ATTACKS, DATA_SOURCES, LOSS_PARTS, POLICIES, DEFENCES, NODE_KINDS, METRICS, DETECTORS)


def generation() -> tuple[int, ...]:
    """Changes whenever anything registers: the spec model is rebuilt then."""
    return tuple(r.generation for r in ALL)


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def register_attack(behaviour: Any, *, version: str | None = None, upstream: Any = None):
    """Class decorator on an attack's spec model (an `XspecModel` with `kind: Literal[...]`)."""

    def decorate(model: type) -> type:
        kind = tag_of(model, "kind")
        ATTACKS.add(kind, Attack(kind, model, behaviour, version, _origin(model), upstream))
        return model

    return decorate


def register_data_source(behaviour: Any, *, roles: tuple[str, ...] = ("pairs",),
                         version: str | None = None):
    """Class decorator on a data source's spec model (with `format: Literal[...]`)."""

    def decorate(model: type) -> type:
        fmt = tag_of(model, "format")
        DATA_SOURCES.add(fmt, DataSource(fmt, model, tuple(roles), behaviour, version,
                                         _origin(model)))
        return model

    return decorate


def register_loss(name: str, views: tuple[str, ...], behaviour: Any = None, *,
                  version: str | None = None):
    """Register a loss part; as a decorator (`@register_loss("x", views=(...))`) on its function,
    or with `behaviour` naming it ("module:function") so the spec side needs no torch."""

    def add(fn: Any) -> Any:
        LOSS_PARTS.add(name, LossPart(name, tuple(views), fn, version,
                                      f"{fn.__module__}.{name}" if not isinstance(fn, str)
                                      else fn.partition(":")[0] + f".{name}"))
        return fn

    return add(behaviour) if behaviour is not None else add


def register_policy(name: str, behaviour: Any, *, arg: str | None = None,
                    version: str | None = None, scope: tuple[str, ...] = ("pretrain",),
                    better: str = "top1", label: str = "",
                    needs: tuple[str, ...] = ("top1",)) -> Policy:
    """A checkpoint-selection policy (see `Policy`). `scope`: "pretrain" (valid in
    `pretrain.select`), "clean" (a row of the report's selection-policy table), or both."""
    if arg not in (None, "int", "objective"):
        raise RegistryError(f"policy {name!r}: arg must be None, 'int' or 'objective'")
    if not scope or set(scope) - {"pretrain", "clean"}:
        raise RegistryError(f"policy {name!r}: scope must name 'pretrain' and/or 'clean'")
    if "clean" in scope and arg is not None:
        raise RegistryError(f"policy {name!r}: a 'clean' policy takes no argument")
    if better != "top1" and not better.startswith(("min:", "max:")):
        raise RegistryError(f"policy {name!r}: better must be 'top1', 'min:<metric>' or "
                            "'max:<metric>'")
    origin = behaviour.partition(":")[0] if isinstance(behaviour, str) else _origin(behaviour)
    return POLICIES.add(name, Policy(name, arg, behaviour, f"{origin}.{name}", version,
                                     tuple(scope), better, label or name, tuple(needs)))


def register_metric(name: str, behaviour: Any = None, *, needs: tuple[str, ...],
                    reduce: str = "sum", version: str | None = None,
                    higher_is_better: bool = True, description: str = ""):
    """Register an evaluation metric (see `Metric`); as a decorator on its function, or with
    `behaviour` naming it ("module:function")."""
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown or not needs:
        raise RegistryError(f"metric {name!r}: needs must name some of {', '.join(NEEDS)}; "
                            f"got {', '.join(unknown) or 'nothing'}")
    if reduce not in ("sum", "whole"):
        raise RegistryError(f"metric {name!r}: reduce must be 'sum' or 'whole'")

    def add(fn: Any) -> Any:
        origin = fn.partition(":")[0] if isinstance(fn, str) else fn.__module__
        METRICS.add(name, Metric(name, tuple(needs), fn, reduce, version, f"{origin}.{name}",
                                 higher_is_better, description))
        return fn

    return add(behaviour) if behaviour is not None else add


def register_defence(name: str, behaviour: Any, *, annotation: Any = None, default: Any = None,
                     start: Callable | None = None, config: Callable | None = None,
                     version: str | None = None, description: str = "", origin: str = "",
                     packable: bool = True, table: str = "clean", views: Any = ()):
    """A `[clean] <name>` field (`table="pretrain"`: a `[pretrain] <name>` field). With a model
    class as `annotation` the field is that table (`None` = off); otherwise give the field's
    type and its "off" default. `views`: feature views it needs beyond the objective's."""
    if table not in ("clean", "pretrain"):
        raise RegistryError(f"defence {name!r}: table must be 'clean' or 'pretrain'")
    if annotation is None:
        raise RegistryError(f"defence {name!r}: give its field's annotation")
    origin = origin or (behaviour.partition(":")[0] if isinstance(behaviour, str)
                        else getattr(behaviour, "__module__", "?"))
    return DEFENCES.add(name, Defence(name, annotation, default, behaviour, start, config,
                                      version, f"{origin}.{name}", description, packable,
                                      table, views))


def defences_of(table: str) -> list[Defence]:
    """The registered defences whose field is in `[clean]` or `[pretrain]`."""
    return [d for d in DEFENCES if d.table == table]


def register_node_kind(name: str, *, order: float, stage: Any, trains: bool = False,
                       cluster: bool = True, label: str = "", config: Any = None,
                       version: str = "2") -> NodeKind:
    """`version` defaults to "2", the runtime salt every kind's ids were made with before kinds
    had versions of their own (so ids stayed)."""
    origin = stage.partition(":")[0] if isinstance(stage, str) else getattr(
        stage, "__module__", "?")
    return NODE_KINDS.add(name, NodeKind(name, order, stage, trains, cluster, label or name,
                                         f"{origin}.{name}", config, version))


def kind_order() -> list[str]:
    return [k.name for k in sorted(NODE_KINDS, key=lambda k: (k.order, k.name))]


def rank(kind: str) -> float:
    return NODE_KINDS.get(kind).order if kind in NODE_KINDS else float("inf")


def plugin_versions(pieces: list[tuple[str, str, str | None]]) -> dict[str, str]:
    """{"attack:kind": version} for the pieces that declare a version (plugins do)."""
    return {f"{what}:{name}": version for what, name, version in pieces if version}
