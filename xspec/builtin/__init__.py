"""Built-in pieces in the one-file form: each module declares its spec fields and its behaviour
and registers itself (see docs/EXTENDING.md). Every module here is imported at start-up; adding
a file is all it takes to add a piece."""
