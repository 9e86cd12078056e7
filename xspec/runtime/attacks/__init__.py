"""Backdoor attacks applied on the fly: which samples to poison, their captions, their triggers.

Every random choice derives from (attack seed, purpose, sample key), so a sample's trigger is the
same in every epoch, process and worker, and the evaluation trigger set never changes. `base`
holds the builder and `TemplatedAttack` (no torch at import, so plugins can subclass it); the
built-in kinds are `patch` (`badnet`, `label_consistent`) and `whole_image` (`blended`, `wanet`,
`sig`), imported when first used.
"""

from xspec.runtime.attacks.base import NoAttack, TemplatedAttack, make_attack, register_attack, rng

_BUILT_IN = {"BadNet": "patch", "LabelConsistent": "patch", "Blended": "whole_image",
             "Sig": "whole_image", "WaNet": "whole_image"}

__all__ = ["ATTACKS", "NoAttack", "TemplatedAttack", "make_attack", "register_attack", "rng",
           *_BUILT_IN]


def __getattr__(name: str):
    if name == "ATTACKS" or name in _BUILT_IN:
        import importlib

        from xspec.runtime.attacks import base

        modules = {m: importlib.import_module(f"xspec.runtime.attacks.{m}")
                   for m in set(_BUILT_IN.values())}
        return base.ATTACKS if name == "ATTACKS" else getattr(modules[_BUILT_IN[name]], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
