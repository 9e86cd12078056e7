"""The poison node: which pairs carry the trigger, and their new captions (manifest.json)."""

from __future__ import annotations

from xspec.runtime.attacks import make_attack
from xspec.runtime.data import pair_keys_and_captions
from xspec.runtime.node import Context
from xspec.store.workspace import atomic_write_json


def poison(ctx: Context) -> None:
    """The poison manifest: which pairs carry the trigger and their new captions."""
    cfg = ctx.cfg  # PoisonConfig
    keys, captions = pair_keys_and_captions(cfg.train)
    attack = make_attack(cfg.attack, cfg.seed)
    indices = attack.select(captions)
    atomic_write_json(ctx.run.path / "manifest.json", {
        "n_pairs": len(captions), "target": attack.target,
        "poisoned": [{"index": int(i), "caption": attack.poison_caption(int(i), captions[i]),
                      "original": captions[i], **({"key": keys[i]} if keys is not None else {})}
                     for i in indices],
    })
    ctx.log(f"poisoned {len(indices)} of {len(captions)} pairs")
    if attack.shortfall:
        ctx.log(f"warning: only {len(indices)} captions name the target {attack.target!r}; "
                f"{attack.shortfall} fewer poisons than attack.poisons asks for")
