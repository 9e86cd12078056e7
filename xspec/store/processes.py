"""The one answer to "is this process alive?", for lock files, run folders and executors."""

from __future__ import annotations

import os


def pid_alive(pid) -> bool:
    """A process with this id exists on this host (owned by anyone); False for a bad id."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # alive, owned by another user
    except (OSError, ValueError, TypeError):
        return False
    return True


def here() -> str:
    return os.uname().nodename


def gone(status: dict) -> bool:
    """A status.json (or lock) that names a process of this host which no longer exists.
    False where it names another host or no process: this host cannot tell."""
    if status.get("host") != here() or not status.get("pid"):
        return False
    return not pid_alive(status["pid"])
