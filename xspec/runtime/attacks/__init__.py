"""Backdoor attacks applied on the fly: which samples to poison, their captions, their triggers.

Every random choice derives from (attack seed, purpose, sample key), so a sample's trigger is the
same in every epoch, process and worker, and the evaluation trigger set never changes. Importing
this package registers every kind: `base` (registry, `none`), `patch` (`badnet`,
`label_consistent`) and `whole_image` (`blended`, `wanet`, `sig`).
"""

from xspec.runtime.attacks.base import ATTACKS, NoAttack, make_attack, register_attack
from xspec.runtime.attacks.patch import BadNet, LabelConsistent
from xspec.runtime.attacks.whole_image import Blended, Sig, WaNet

__all__ = ["ATTACKS", "BadNet", "Blended", "LabelConsistent", "NoAttack", "Sig", "WaNet",
           "make_attack", "register_attack"]
