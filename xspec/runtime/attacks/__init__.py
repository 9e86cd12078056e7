"""Backdoor attacks applied on the fly: which samples to poison, their captions, their triggers.

Every random choice derives from (attack seed, purpose, sample key), so a sample's trigger is the
same in every epoch, process and worker, and the evaluation trigger set never changes. `base`
holds the builder and `TemplatedAttack` (no torch at import, so plugins can subclass it); the
built-in kinds are `patch` (`badnet`, `label_consistent`) and `whole_image` (`blended`, `wanet`,
`sig`), each named by its spec model's registration (`xspec.extend.register_attack`): one
registry of attacks, shared by the compiler and the runtime.
"""

from xspec.runtime.attacks.base import NoAttack, TemplatedAttack, make_attack, rng

__all__ = ["NoAttack", "TemplatedAttack", "make_attack", "rng"]
