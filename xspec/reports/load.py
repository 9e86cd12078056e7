"""Load the studies of one report into temporary tables, aggregated once in DuckDB.

`open_store` opens the results database read-only; `load` then derives, for the studies named:

- xr_nodes     every node with the spec fields reports group by (from `nodes.lineage`) and its
               upstream select / shrink_perturb / pretrain node (from `nodes.deps`);
- xr_varying   the lineage keys that vary between the pretrain or clean nodes of a study (the
               sweep axes besides objective and learning rate), see `_setting_keys`;
- xr_settings  per node, those keys' values as a label ("ssl_weight=0.5, poisons=10") and JSON;
- xr_clean     clean nodes with their settings, the unit of Table 2, the Pareto panels, ...;
- xr_eval      zero-shot top-1 and ASR (fractions) with their n per node and epoch;
- xr_train     training losses per node, epoch and metric (loss, mmcl, ssl, ...);
- xr_perf      per training node, the loader figures averaged over its epochs: pairs/s and the
               share of epoch wall time spent waiting for data (split "perf").

Only aggregated rows leave DuckDB: the metrics table (millions of rows) is read by three scans.
Values are bound as `?` parameters; SQL text is built from constants only.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from xspec.errors import XspecError
from xspec.extend.plugins import load_builtins
from xspec.compiler.configs import left_out
from xspec.extend.registry import kind_order as registered_kinds
from xspec.store.db import open_duckdb

load_builtins()
KINDS = tuple(registered_kinds())  # plugins loaded later sort after these
# Keys shown in their own columns (objectives, learning rate); seeds are never grouped by.
OWN_COLUMNS = ("pretrain.objective", "clean.objective", "clean.lr")


def fallback(key: str) -> str | None:
    """What a settings column shows where a run lacks `key`: the default of the field its
    id left out at its default, "off" for a table or defence that is off there (read from the
    node kinds' typed configs: `xspec.compiler.configs.left_out`)."""
    return left_out(key)


def _valued(key: str) -> bool:
    """A key that a run lacking it holds at a default value (not a table that is off)."""
    return fallback(key) not in (None, "off")


def kind_order(expression: str) -> str:
    """SQL expression ordering node kinds (or key prefixes) as the pipeline runs them."""
    whens = " ".join(f"WHEN '{kind}' THEN {i}" for i, kind in enumerate(KINDS))
    return f"(CASE {expression} {whens} ELSE {len(KINDS)} END)"


NODES = """
CREATE OR REPLACE TEMP TABLE xr_nodes AS
WITH base AS (
    SELECT study, id AS node_id, kind, name, status, error, updated, lineage,
        json_extract_string(deps, '$[*]') AS deps
    FROM nodes WHERE list_contains(?::VARCHAR[], study)
),
edges AS (
    SELECT c.study, c.node_id, p.node_id AS parent, p.kind AS parent_kind
    FROM (SELECT study, node_id, unnest(deps) AS parent FROM base) c
    JOIN base p ON p.study = c.study AND p.node_id = c.parent
),
ups AS (
    SELECT b.*,
        CASE WHEN b.kind = 'shrink_perturb' THEN b.node_id ELSE sp.parent END AS sp_id,
        CASE WHEN b.kind = 'select' THEN b.node_id
            ELSE coalesce(sel.parent, sel2.parent) END AS select_id
    FROM base b
    LEFT JOIN edges sp ON sp.study = b.study AND sp.node_id = b.node_id
        AND sp.parent_kind = 'shrink_perturb'
    LEFT JOIN edges sel ON sel.study = b.study AND sel.node_id = b.node_id
        AND sel.parent_kind = 'select' AND b.kind <> 'select'
    LEFT JOIN edges sel2 ON sel2.study = b.study AND sel2.node_id = sp.parent
        AND sel2.parent_kind = 'select'
)
SELECT u.study, u.node_id, u.kind, u.name, u.status, u.error, u.updated, u.lineage,
    u.lineage->>'$."pretrain.objective"' AS pretrain_objective,
    u.lineage->>'$."clean.objective"' AS clean_objective,
    TRY_CAST(coalesce(u.lineage->>'$."clean.lr"', u.lineage->>'$."pretrain.lr"') AS DOUBLE)
        AS lr,
    u.lineage->>'$."select.policy"' AS policy,
    u.lineage->>'$."select.reference"' AS reference,
    u.lineage->>'$."poison.seed"' AS seed,
    u.sp_id, u.select_id,
    CASE WHEN u.kind = 'pretrain' THEN u.node_id ELSE pre.parent END AS pretrain_id
FROM ups u
LEFT JOIN edges pre ON pre.study = u.study AND pre.node_id = u.select_id
    AND pre.parent_kind = 'pretrain'
"""

KEY_VALUES = """
CREATE OR REPLACE TEMP TABLE xr_kv AS
SELECT study, node_id, kind, key, json_extract_string(lineage, '$."' || key || '"') AS value
FROM (SELECT study, node_id, kind, lineage, unnest(json_keys(lineage)) AS key
      FROM xr_nodes WHERE kind IN ('pretrain', 'clean'))
"""

KEY_STATS = """
WITH totals AS (
    SELECT study, kind, count(*) AS nodes FROM xr_nodes
    WHERE kind IN ('pretrain', 'clean') GROUP BY ALL
),
candidates AS (
    SELECT DISTINCT kv.kind, kv.key
    FROM xr_kv kv JOIN totals t ON t.study = kv.study AND t.kind = kv.kind
    WHERE kv.key NOT LIKE '%seed' AND NOT list_contains(?::VARCHAR[], kv.key)
    GROUP BY kv.study, kv.kind, kv.key, t.nodes
    HAVING count(*) < t.nodes OR count(DISTINCT coalesce(kv.value, '∅')) > 1
)
SELECT c.kind, c.key, count(*) AS present,
    (SELECT sum(nodes) FROM totals t WHERE t.kind = c.kind) AS total,
    count(DISTINCT kv.value) AS distinct_present,
    md5(string_agg(kv.study || '/' || kv.node_id, ',' ORDER BY kv.study, kv.node_id))
        AS presence
FROM candidates c JOIN xr_kv kv ON kv.kind = c.kind AND kv.key = c.key
GROUP BY c.kind, c.key
"""

SETTINGS = """
CREATE OR REPLACE TEMP TABLE xr_settings AS
WITH cells AS (
    SELECT n.study, n.node_id, v.label, v.ord,
        CASE WHEN v.presence THEN CASE WHEN kv.value IS NULL THEN 'off' ELSE 'on' END
            ELSE coalesce(kv.value, v.fallback, '—') END AS value
    FROM xr_nodes n JOIN xr_varying v ON v.kind = n.kind
    LEFT JOIN xr_kv kv ON kv.study = n.study AND kv.node_id = n.node_id AND kv.key = v.key
)
SELECT study, node_id,
    string_agg(label || '=' || value, ', ' ORDER BY ord, label) AS settings,
    '{' || string_agg(to_json(label)::VARCHAR || ':' || to_json(value)::VARCHAR, ','
                      ORDER BY ord, label) || '}' AS settings_json
FROM cells GROUP BY study, node_id
"""

CLEAN = """
CREATE OR REPLACE TEMP TABLE xr_clean AS
SELECT n.study, n.node_id, n.name, n.status, n.seed, n.pretrain_objective, n.clean_objective,
    n.lr, coalesce(s.settings, '') AS settings, coalesce(s.settings_json, '{}') AS settings_json,
    n.select_id, n.sp_id, n.pretrain_id
FROM xr_nodes n LEFT JOIN xr_settings s ON s.study = n.study AND s.node_id = n.node_id
WHERE n.kind = 'clean'
"""

EVAL_ROWS = """
SELECT node_id, epoch,
    max(value) FILTER (WHERE metric = 'top1') AS top1,
    max(n) FILTER (WHERE metric = 'top1') AS top1_n,
    max(value) FILTER (WHERE metric = 'asr') AS asr,
    max(n) FILTER (WHERE metric = 'asr') AS asr_n
FROM metrics
WHERE split = ? AND metric IN ('top1', 'asr')
    AND node_id IN (SELECT node_id FROM xr_nodes WHERE status <> 'failed')
GROUP BY node_id, epoch
HAVING top1 IS NOT NULL
"""
"""Accuracy and ASR per evaluated epoch of the study's nodes on one split (parameter)."""

EVAL = f"CREATE OR REPLACE TEMP TABLE xr_eval AS {EVAL_ROWS}"

TRAIN = """
CREATE OR REPLACE TEMP TABLE xr_train AS
SELECT node_id, epoch, metric, avg(value) AS value
FROM metrics
WHERE split = 'train' AND epoch >= 1
    AND node_id IN (SELECT node_id FROM xr_nodes WHERE kind IN ('pretrain', 'clean')
                    AND status <> 'failed')
GROUP BY node_id, epoch, metric
"""

PERF = """
CREATE OR REPLACE TEMP TABLE xr_perf AS
SELECT node_id,
    avg(value) FILTER (WHERE metric = 'pairs_per_s') AS pairs_per_s,
    avg(value) FILTER (WHERE metric = 'data_wait_share') AS data_wait_share
FROM metrics
WHERE split = 'perf' AND node_id IN (SELECT node_id FROM xr_nodes)
GROUP BY node_id
"""

# The one eval row of a select / shrink_perturb node (its last, should there be several).
LAST_EVAL = """
(SELECT * FROM xr_eval
 QUALIFY row_number() OVER (PARTITION BY node_id ORDER BY epoch DESC) = 1)
"""


def _common_prefix(keys: list[str]) -> str:
    parts = [key.split(".") for key in keys]
    prefix = []
    for segments in zip(*parts):
        if len(set(segments)) > 1:
            break
        prefix.append(segments[0])
    return ".".join(prefix)


def _label(kind: str, key: str) -> str:
    own = "clean." if kind == "clean" else "pretrain."
    return key.removeprefix(own)


def _setting_keys(stats: pd.DataFrame) -> pd.DataFrame:
    """The settings columns from per-key statistics (KEY_STATS): kind, key, label, ord, whether
    the column shows presence (on/off) and the value to show when the key is absent.

    Keys present on only some nodes and constant where present (a block such as
    shrink_perturb.* or clean.deep_cluster.*) become one on/off column named by their common
    prefix. Every other key is its own column: a lineage holds each setting under one key
    (`xspec.compiler.lineage`), so no two columns show one setting.
    """
    stats = stats.assign(ord=[KINDS.index(k.split(".")[0]) if k.split(".")[0] in KINDS
                              else len(KINDS) for k in stats["key"]])
    stats = stats.assign(length=stats["key"].str.len()).sort_values(
        ["kind", "ord", "length", "key"]).reset_index(drop=True)
    rows, handled = [], set()
    blocks = stats[(stats["present"] < stats["total"]) & (stats["distinct_present"] == 1)
                   & ~stats["key"].map(_valued).astype(bool)]
    for (kind, _), block in blocks.groupby(["kind", "presence"], sort=False):
        prefix = _common_prefix(list(block["key"]))
        if len(block) < 2 or not prefix:
            continue
        first = block.iloc[0]
        rows.append((kind, first["key"], _label(kind, prefix), int(first["ord"]), True, None))
        handled.update(zip(block["kind"], block["key"]))
    for row in stats.itertuples():
        if (row.kind, row.key) in handled:
            continue
        rows.append((row.kind, row.key, _label(row.kind, row.key), int(row.ord), False,
                     fallback(row.key)))
    return pd.DataFrame(rows, columns=["kind", "key", "label", "ord", "presence", "fallback"])


def open_store(db_path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the results database (temporary tables stay in memory)."""
    if not Path(db_path).is_file():
        raise XspecError(f"{db_path}: no results database; run or ingest the study first")
    return open_duckdb(Path(db_path), read_only=True)


def load(con: duckdb.DuckDBPyConnection, studies: list[str]) -> None:
    """Fill the xr_* temporary tables for `studies`; raises if one of them has no nodes."""
    found = {row[0] for row in con.execute(
        "SELECT DISTINCT study FROM nodes WHERE list_contains(?::VARCHAR[], study)",
        [studies]).fetchall()}
    missing = [study for study in studies if study not in found]
    if missing:
        raise XspecError(f"no nodes for study {missing[0]!r}; run or ingest it first")
    con.execute(NODES, [studies])
    con.execute(KEY_VALUES)
    varying_keys = _setting_keys(con.execute(KEY_STATS, [list(OWN_COLUMNS)]).df())
    con.register("xr_varying_frame", varying_keys)
    con.execute("CREATE OR REPLACE TEMP TABLE xr_varying AS SELECT * FROM xr_varying_frame")
    con.unregister("xr_varying_frame")
    con.execute(SETTINGS)
    con.execute(CLEAN)
    con.execute(EVAL, ["eval"])
    con.execute(TRAIN)
    con.execute(PERF)


def varying(con, kind: str) -> list[str]:
    """Labels of the setting columns of `kind` ('clean' or 'pretrain'), in display order."""
    rows = con.execute("SELECT label FROM xr_varying WHERE kind = ? ORDER BY ord, label",
                       [kind]).fetchall()
    return [row[0] for row in rows]
