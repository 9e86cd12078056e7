"""`[pretrain]` defences (RoCLIP, SafeCLIP, a plugin's): registered with
`register_defence(..., table="pretrain")`, each one that is on enters the pretrain node's config
under its name, with its version in `plugins`; off, it leaves the config (and the id) as it was.
"""

from __future__ import annotations

from xspec.extend.registry import defences_of


def with_pretrain_defences(config: dict, pretrain) -> dict:
    versions = dict(config.get("plugins", {}))
    for defence in defences_of("pretrain"):
        value = getattr(pretrain, defence.name)
        if defence.behaviour is None or not defence.active(value):
            continue
        config[defence.name] = (value.model_dump(mode="json") if hasattr(value, "model_dump")
                                else value)
        if defence.version:
            versions[f"defence:{defence.name}"] = defence.version
    if versions:
        config["plugins"] = dict(sorted(versions.items()))
    return config
