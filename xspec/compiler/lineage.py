"""A node's lineage: its config and its upstream chain's, flattened under `kind.` prefixes,
each spec setting under exactly one key.

The rule (declared, never guessed from values): a config field marked `Setting(name)`
(`xspec.spec.base`; the seed, the training pairs, the evaluation set, ...) is a copy of a setting
that several nodes of a chain hold. The lineage shows it under the most upstream node of the
same study that holds it (`poison.train`, `poison.seed`, `pretrain.eval`); a downstream node's
copy stays in its config and its id, and out of its lineage. A node of another study (the model a
`clean.start` study cleans) does not own this study's settings: this study's copy is shown.
Fields inside a marked field may carry markers of their own (`eval.source` is `data.eval`, the
set a decree node draws its shadow images from). A call may mark a field for that node alone
(`copies`): the cleaning pool is the training pairs only where `data.clean.from = "train"`.
"""

from __future__ import annotations

from typing import Any

from xspec.compiler.configs import fields_of, model_in
from xspec.spec.base import Setting


def _setting(field) -> str | None:
    if field is None:
        return None
    return next((m.name for m in field.metadata if isinstance(m, Setting)), None)


def own_lineage(kind: str, model: type | None, identity: dict, owners: dict[str, str],
                holds: dict[str, str], copies: dict[str, str] | None = None) -> dict:
    """The lineage keys of a node's own config (`identity`, its id dump; `plugins` left out).
    `owners` ({setting: lineage key}) holds the settings its upstream chain already shows;
    those this node shows first are added to it. `holds` gets {setting: the key the node's
    own copy would have} for each setting its config holds (names order by it)."""
    copies = copies or {}
    out: dict[str, Any] = {}

    def walk(model, data: dict, path: tuple[str, ...]) -> None:
        fields = fields_of(kind, model, not path) if model is not None else {}
        for key, value in data.items():
            if not path and key == "plugins":
                continue
            where = (*path, key)
            field = fields.get(key)
            setting = copies.get(".".join(where)) or _setting(field)
            if setting is not None:
                holds[setting] = ".".join((kind, *where))
                if setting in owners:
                    continue
                owners[setting] = ".".join((kind, *where))
            if isinstance(value, dict):
                walk(model_in(field.annotation) if field is not None else None, value, where)
            else:
                out[".".join((kind, *where))] = value

    walk(model, identity, ())
    return out


def pool_copies(source) -> dict[str, str]:
    """`data.clean.from = "train"`: the cleaning pool is the training pairs (a clean or
    pseudo_labels node's `data.from`), shown once."""
    return {"data.from": "data.train"} if source == "train" else {}


def own_prefixes(nodes: list) -> dict[str, str]:
    """{lineage key: the key the nodes' own configs give it} for the settings they hold that
    an upstream node shows (`poison.train` -> `pretrain.train`); the first node holding it
    decides."""
    out: dict[str, str] = {}
    for node in nodes:
        for setting, own in node.holds.items():
            owner = node.owners.get(setting)
            if owner is not None and owner != own:
                out.setdefault(owner, own)
    return out


def as_own(key: str, prefixes: dict[str, str]) -> str:
    """`key` as the nodes' own config names it (`own_prefixes`): `poison.train.path` ->
    `pretrain.train.path` on a pretrain node; else `key`."""
    for owner, own in prefixes.items():
        if key == owner or key.startswith(owner + "."):
            return own + key[len(owner):]
    return key
