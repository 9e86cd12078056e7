"""The workspace of the node this process runs, for code built from a node's config alone (an
attack reading another node's output: BadCLIP's optimised patch). Its own module because
`xspec.runtime.node` also runs as `__main__` (a node in its own process), where a global set
there would not be the one importers see."""

from __future__ import annotations

CURRENT: dict = {"workspace": None}
