"""A run folder is reused only for the config it was made for.

node.json keeps the node's full config (every field, defaults included). Before running, each
existing run folder of the plan is compared with the config compiled now: a hand edit, or a
default that changed since the folder was made (the id leaves fields at their default out, so
it cannot see that), is refused with the differing fields named, instead of silently reusing
or resuming results made under other settings.
"""

from __future__ import annotations

import json

from xspec.errors import XspecError
from xspec.spec.base import full_dump


class ReuseRefused(XspecError):
    """A run folder's node.json disagrees with the node compiled now."""


def differences(recorded, compiled, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ. A key only `compiled` has is no difference:
    node.json files written before full configs were kept lack the fields at their default."""
    if isinstance(recorded, dict) and isinstance(compiled, dict):
        found = []
        for key in sorted(set(recorded) | set(compiled)):
            if key not in recorded:
                continue
            path = f"{prefix}.{key}" if prefix else key
            if key not in compiled:
                found.append(path)
            else:
                found += differences(recorded[key], compiled[key], path)
        return found
    return [] if recorded == compiled else [prefix or "config"]


def mismatches(recorded: dict, node) -> list[str]:
    """Where a node.json record disagrees with `node` as compiled now, as a message names the
    fields: "kind" (the node's), then "config.<dotted path>" (`differences`)."""
    found = differences(recorded.get("config"), full_dump(node.config), prefix="config")
    return (["kind"] if recorded.get("kind") != node.kind else []) + found


def named(found: list[str], limit: int) -> str:
    """The first `limit` of `mismatches` and how many more: config.lr, config.seed and 2 more."""
    return ", ".join(found[:limit]) + (f" and {len(found) - limit} more"
                                       if len(found) > limit else "")


def check_reuse(run, node) -> bool:
    """Raise `ReuseRefused` when `run`'s node.json is not `node`'s config. True where node.json
    should be (re)written: missing, or older and agreeing but without the defaults, or with a
    lineage made by an older rule (the lineage is derived from the configs, which agree; ingest
    and `xspec status` read node.json: `xspec.store.recorded`)."""
    if not run.node_file.exists():
        return True
    try:
        recorded = json.loads(run.node_file.read_text())
    except (OSError, ValueError) as exc:
        raise ReuseRefused(f"{run.node_file}: unreadable ({exc}); move the folder away to run "
                           f"node {node.name or node.short} afresh") from None
    found = mismatches(recorded, node)
    if found:
        raise ReuseRefused(
            f"{run.path}: its node.json differs from node {node.name or node.short} as compiled "
            f"now in {named(found, 5)} (edited by hand, or a default changed since it ran); "
            "move the folder away to run the node afresh")
    older = recorded.get("config") != full_dump(node.config)  # agreeing, without the defaults
    return older or recorded.get("lineage") != node.lineage
