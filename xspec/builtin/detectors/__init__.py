"""Detectors of poisoned training pairs (`[detect.<name>]`), one file each, after
Detect-CLIP-Backdoor-Samples (Huang et al., ICLR 2025; github HanxunH). Every module here is
imported at start-up, as the modules of `xspec.builtin` are."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__, f"{__name__}."):
    importlib.import_module(_info.name)
