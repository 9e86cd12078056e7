"""A study's notes as the report shows them: `[study] notes`, then each `[[variants]]` table's
`study.notes` with the settings that variant sets (its table, less `study`), so a reader knows
which runs a note speaks of."""

from __future__ import annotations

from typing import Any

MAX_SETS = 300  # characters of a variant's settings summary


def study_notes(raw: dict) -> list[dict[str, Any]]:
    """[{"variant": None or 1-based index, "notes": text, "sets": "clean.lr = 1e-3; ..."}]."""
    found = []
    top = _notes_of(raw)
    if top:
        found.append({"variant": None, "notes": top, "sets": ""})
    for index, table in enumerate(raw.get("variants") or [], 1):
        notes = _notes_of(table) if isinstance(table, dict) else ""
        if notes and notes != top:
            found.append({"variant": index, "notes": notes, "sets": settings_summary(table)})
    return found


def _notes_of(table: dict) -> str:
    study = table.get("study")
    notes = study.get("notes") if isinstance(study, dict) else None
    return notes.strip() if isinstance(notes, str) else ""


def settings_summary(table: dict) -> str:
    """`a.b = value; ...` of every leaf of a variant table except `study.*`, shortened."""
    leaves = [f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}"
              for key, value in _leaves(table, "") if not key.startswith("study.")]
    text = "; ".join(leaves) or "no other setting"
    return text if len(text) <= MAX_SETS else text[:MAX_SETS - 1] + "…"


def _leaves(table: dict, prefix: str):
    for key, value in table.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
