"""What a `[cluster]` value may hold: each becomes one `#SBATCH` line of a script that runs as
shell, so no control character (a newline would start a line of its own) and `additional`
names that are sbatch option names. Checked when a spec loads and again on submit (flags)."""

from __future__ import annotations

import re


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def unsafe_options(options: dict, prefix: str | None = None) -> list[str]:
    """Problems of options that would leave their `#SBATCH` line: a control character (a newline
    starts a new line of the script, which runs as shell) or an `additional` name that is not an
    sbatch option name. Named as slurm options, or as spec keys under `prefix` (cluster.)."""
    problems = []
    for key, value in options.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for name, item in items:
            where = (f"slurm option {key!r}" + (f" {name!r}" if name is not None else "")
                     if prefix is None else f"{prefix}{key}" + (f".{name!r}" if name else ""))
            if name is not None and not (isinstance(name, str) and _OPTION_NAME.fullmatch(name)):
                problems.append(f"{where}: not an sbatch option name (letters, digits, - and _)")
            elif isinstance(item, str) and _CONTROL.search(item):
                problems.append(f"{where}: control character {_CONTROL.search(item).group()!r} "
                                "not allowed (a newline would start a new line of the sbatch "
                                "script)")
            elif name is not None and not isinstance(item, (str, int, float, bool)):
                problems.append(f"{where}: expected a string or number, got "
                                f"{type(item).__name__}")
    return problems
