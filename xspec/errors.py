"""Exceptions raised on user-facing problems; the CLI turns them into one-line messages."""


class XspecError(Exception):
    """Base class: anything the user can fix by changing a spec, a file or a flag."""


class SpecError(XspecError):
    """The spec file cannot be read or does not match the schema."""


class CompileError(XspecError):
    """The spec is valid but cannot be turned into a plan."""


class DataError(XspecError):
    """A dataset is missing, malformed or unreadable."""


class ExecutionError(XspecError):
    """A node failed while running."""

    def __init__(self, node_id: str, message: str):
        super().__init__(f"{node_id}: {message}")
        self.node_id = node_id


class WorkspaceBusy(XspecError):
    """Another xspec process holds the workspace database."""
