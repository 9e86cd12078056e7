"""Content ids: sha256 of canonical JSON of a node's config (its id dump), its dependencies and
its kind's version."""

from __future__ import annotations

import hashlib
import json


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def node_id(kind: str, config: dict, deps: tuple[str, ...], version: str) -> str:
    """`version` is the kind's (`register_node_kind`); it sits under "runtime", where the one
    global salt ("2") was before kinds had versions, so ids made then are unchanged."""
    payload = {"kind": kind, "config": config, "deps": sorted(deps), "runtime": version}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
