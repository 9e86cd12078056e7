"""What a `[cluster]` value may hold: each becomes one `#SBATCH` line of a script that runs as
shell, so no control character (a newline would start a line of its own) and `additional`
names that are sbatch option names. Checked when a spec loads and again on submit (flags)."""

from __future__ import annotations

import math
import re

from xspec.errors import XspecError


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def parse_time(value: str | int) -> int:
    """A SLURM time limit ("MM", "MM:SS", "HH:MM:SS", "D-HH[:MM[:SS]]", or minutes) in minutes."""
    if isinstance(value, int) and not isinstance(value, bool):
        minutes = value
    elif isinstance(value, str):
        match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
        if not match:
            raise XspecError(f"slurm time {value!r}: expected MM, HH:MM:SS or D-HH:MM:SS")
        days, a, b, c = (int(g) if g else None for g in match.groups())
        if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
            seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
        elif c is not None:  # HH:MM:SS
            seconds = a * 3600 + b * 60 + c
        else:  # MM or MM:SS
            seconds = a * 60 + (b or 0)
        minutes = math.ceil(seconds / 60)
    else:
        raise XspecError(f"slurm time {value!r}: expected MM, HH:MM:SS or D-HH:MM:SS, or minutes")
    if minutes < 1:
        raise XspecError(f"slurm time {value!r}: must be at least one minute")
    return minutes


def checked_time(value):
    """`[cluster] time` / `--time`: the value if `parse_time` reads it (pydantic validator)."""
    if value is not None:
        try:
            parse_time(value)
        except XspecError as exc:
            raise ValueError(str(exc)) from None
    return value


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
