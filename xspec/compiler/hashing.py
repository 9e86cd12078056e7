"""Content ids: sha256 of canonical JSON of a node's resolved config and its dependencies."""

from __future__ import annotations

import hashlib
import json

# Bump when the runtime changes what a node computes for the same config.
# 2: triggered images stored as uint8 (loader workers); shrink-and-perturb leaves buffers
#    (BatchNorm statistics) alone (docs/FIDELITY.md).
RUNTIME_VERSION = "2"


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def node_id(kind: str, config: dict, deps: tuple[str, ...]) -> str:
    payload = {"kind": kind, "config": config, "deps": sorted(deps), "runtime": RUNTIME_VERSION}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
