"""What a plugin imports: the registries, the register functions and the spec building blocks.

A plugin is one module that declares its spec fields (pydantic models deriving `XspecModel`) and
its behaviour together and registers both; docs/EXTENDING.md walks through each kind of piece
and examples/plugins/ holds a worked attack and cleaning defence. Keep torch imports inside the
behaviour (functions and methods): the compiler imports the plugin too and never needs torch.
"""

from xspec.extend.registry import (
    ATTACKS, DATA_SOURCES, DEFENCES, DETECTORS, LOSS_PARTS, METRICS, NODE_KINDS, POLICIES,
    Pieces, RegistryError, Term, register_attack, register_data_source, register_defence,
    register_loss, register_metric, register_node_kind, register_policy,
    resolve,
)
from xspec.extend.detectors import register_detector
from xspec.extend.files import FileInput, FileRef
from xspec.spec.base import (
    Fraction, NonNegativeFloat, NonNegativeInt, OmitAtDefault, PerMember, PositiveFloat,
    PositiveInt, Setting, XspecModel,
)

__all__ = [
    "ATTACKS", "DATA_SOURCES", "DEFENCES", "DETECTORS", "FileInput", "FileRef", "Fraction",
    "LOSS_PARTS", "METRICS", "NODE_KINDS", "NonNegativeFloat", "NonNegativeInt", "OmitAtDefault",
    "POLICIES", "PerMember", "Pieces", "PositiveFloat", "PositiveInt", "RegistryError", "Setting",
    "Term",
    "XspecModel", "register_attack", "register_data_source", "register_defence",
    "register_detector", "register_loss", "register_metric", "register_node_kind",
    "register_policy", "resolve",
]
