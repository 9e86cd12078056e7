"""A pydantic error in the words xspec's messages use: `xspec validate` (xspec.spec.load) and
`xspec submit`'s flags (ClusterOptions.problems) say the same thing about the same value."""

from __future__ import annotations


def describe(error: dict) -> str:
    """A pydantic error in the words `xspec validate` uses (also `xspec submit`'s flags)."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        allowed = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"unknown value {value!r}; allowed: {allowed}"
    if kind == "union_tag_invalid":
        allowed = error["ctx"]["expected_tags"].replace("'", "")
        tag, field = error["ctx"]["tag"], error["ctx"]["discriminator"].strip("'")
        return f"unknown {field} {tag!r}; allowed: {allowed}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{error['msg'][0].lower()}{error['msg'][1:]} (got {value!r})"
