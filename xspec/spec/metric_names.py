"""`evaluate.metrics` entries: names of registered metrics (`xspec.extend.register_metric`),
checked against the registry when the spec is validated, so a plugin's metric is valid as soon
as its study loads the plugin."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

import xspec.builtin.accuracy  # noqa: F401 (the defaults, registered before any spec)
from xspec.extend.registry import METRICS


def _registered(name: str) -> str:
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; allowed: {', '.join(METRICS.names())}")
    return name


Metric = Annotated[str, AfterValidator(_registered)]
