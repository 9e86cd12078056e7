"""The report's provenance section: which code and machines produced the study's runs, and a
flag on every table whose rows come from more than one code version."""

from __future__ import annotations

# The report's tables and the node kinds whose runs make their rows.
TABLE_KINDS = {"selected_models": ("pretrain",), "best_clean_accuracy": ("clean",)}


def _has_table(con) -> bool:
    """Databases written before migration 3 (opened read-only, never migrated) have none."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = "
                            "'provenance'").fetchone()[0])


def _short(value) -> str | None:
    return value[:12] if isinstance(value, str) else value


def section(con) -> dict:
    """{"versions": [...], "environments": [...], "mixed": {table: count}, "missing": int}
    over the nodes loaded in xr_nodes."""
    empty = {"versions": [], "environments": [], "mixed": {}, "missing": 0, "recorded": 0}
    if not _has_table(con):
        return empty
    versions = con.execute(
        "SELECT p.code, any_value(p.xspec_version), any_value(p.git_commit), "
        "any_value(p.git_dirty), any_value(p.snapshot), count(*), "
        "string_agg(DISTINCT n.kind, ', ' ORDER BY n.kind) "
        "FROM provenance p JOIN (SELECT DISTINCT node_id, kind FROM xr_nodes) n USING (node_id) "
        "GROUP BY p.code ORDER BY count(*) DESC, p.code").fetchall()
    environments = con.execute(
        "SELECT torch, open_clip, cuda, cudnn, device_name, device_count, "
        "string_agg(DISTINCT host, ', ' ORDER BY host), count(*) "
        "FROM provenance p JOIN (SELECT DISTINCT node_id FROM xr_nodes) n USING (node_id) "
        "GROUP BY ALL ORDER BY count(*) DESC").fetchall()
    mixed = {}
    for table, kinds in TABLE_KINDS.items():
        count = con.execute(
            "SELECT count(DISTINCT p.code) FROM provenance p JOIN (SELECT DISTINCT node_id, "
            "kind FROM xr_nodes) n USING (node_id) WHERE list_contains(?, n.kind)",
            [list(kinds)]).fetchone()[0]
        if count > 1:
            mixed[table] = count
    trained = con.execute(
        "SELECT count(DISTINCT node_id), count(DISTINCT node_id) FILTER (WHERE node_id IN "
        "(SELECT node_id FROM provenance)) FROM xr_nodes WHERE status IN ('done', 'running', "
        "'failed')").fetchone()
    keys = ("code", "xspec_version", "git_commit", "git_dirty", "snapshot", "runs", "kinds")
    return {
        "versions": [{**dict(zip(keys, row)), "git_commit": _short(row[2]),
                      "git_dirty": _short(row[3]), "snapshot": _short(row[4])}
                     for row in versions],
        "environments": [dict(zip(("torch", "open_clip", "cuda", "cudnn", "device_name",
                                   "device_count", "hosts", "runs"), row))
                         for row in environments],
        "mixed": mixed, "recorded": trained[1], "missing": trained[0] - trained[1],
    }
