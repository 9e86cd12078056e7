"""The one parser of `pretrain.select`: a registered policy with scope "pretrain".

The built-ins (`best_accuracy`, `final`, `epoch(N)`, `match_accuracy(<objective>)`) live in
`xspec.builtin.selection`; a plugin adds one with `xspec.extend.register_policy`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import xspec.builtin.selection  # noqa: F401 (the built-ins, registered before any spec)
from xspec.extend.registry import POLICIES

CALL = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)(\((?P<arg>[^()]*)\))?$")
ARGS = {"int": re.compile(r"^\d+$"), "objective": re.compile(r"^[a-z_][a-z0-9_+]*$")}
SHAPES = {None: "{}", "int": "{}(N)", "objective": "{}(<objective>)"}

@dataclass(frozen=True)
class Selection:
    name: str
    arg: str | None = None

    @property
    def epoch(self) -> int | None:
        return int(self.arg) if self.name == "epoch" else None

    @property
    def reference(self) -> str | None:
        """The objective whose run a `match_accuracy(...)`-like policy compares against."""
        policy = POLICIES.get(self.name)
        return self.arg if policy.arg == "objective" else None


def _pretrain_policies() -> list:
    return sorted((p for p in POLICIES if "pretrain" in p.scope), key=lambda p: p.name)


def allowed() -> str:
    return ", ".join(SHAPES[p.arg].format(p.name) for p in _pretrain_policies())


def parse_policy(text: str) -> Selection:
    """`best_accuracy` -> Selection("best_accuracy"); `epoch(5)` -> Selection("epoch", "5").
    Raises ValueError naming the allowed shapes."""
    match = CALL.match(text.strip())
    policy = POLICIES.find(match.group("name")) if match else None
    policy = policy if policy is not None and "pretrain" in policy.scope else None
    arg = match.group("arg") if match else None
    if policy is None or (arg is None) != (policy.arg is None) or (
            arg is not None and not ARGS[policy.arg].match(arg)):
        raise ValueError(f"unknown value '{text}'; allowed: {allowed()}")
    return Selection(policy.name, arg)


def policy_pattern() -> str:
    """A regular expression of every registered policy's shape (for `xspec schema`)."""
    arg = {None: "", "int": r"\(\d+\)", "objective": r"\([a-z_][a-z0-9_+]*\)"}
    return "^(" + "|".join(f"{p.name}{arg[p.arg]}" for p in _pretrain_policies()) + ")$"
