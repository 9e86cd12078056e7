"""What the CLI says when a command ends other than normally: one line, never a traceback
(unless --debug). Expected problems are `XspecError`s with their own message; this module words
the rest: a full disk, a read-only or unwritable folder, and the unexpected."""

from __future__ import annotations

import errno
import shlex
import sys

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def interrupted_line() -> str:
    """What Ctrl-C prints: nothing finished is lost, and the command that resumes."""
    again = shlex.join(["xspec", *sys.argv[1:]])
    return f"interrupted: finished runs are kept; `{again}` resumes the rest"


def os_error_line(exc: OSError) -> str | None:
    """One line for a full disk or an unwritable place; None for other OS errors."""
    where = exc.filename or "the workspace"
    if exc.errno in DISK_FULL:
        return (f"no space left on the device holding {where}; free some space and run the "
                "command again (finished runs are kept)")
    if exc.errno in NOT_WRITABLE:
        return (f"{where}: {exc.strerror.lower()} (a read-only or someone else's folder?); "
                "use a workspace you can write to (-w)")
    return None


def crash_line(exc: BaseException) -> str:
    """One line for an exception no part of xspec expected."""
    if isinstance(exc, OSError):
        line = os_error_line(exc)
        if line:
            return line
        if exc.strerror:
            return f"{exc.filename or 'xspec'}: {exc.strerror}"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to process"
    if isinstance(exc, MemoryError):
        return "out of memory"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"unexpected {type(exc).__name__}" + (f": {first}" if first else "")
            + "; this is a bug in xspec: run the command again with --debug for the traceback")
