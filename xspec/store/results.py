"""A workspace's results as DuckDB relations, for notebooks and scripts.

`results(workspace)` opens `<workspace>/xspec.duckdb` read-only (it never corrupts a running
`xspec`, but while it is open `xspec run` and `xspec report` wait to ingest, up to
$XSPEC_DB_WAIT seconds: `close()` it when done; opening waits up to 30 s for an ingest to
finish) and returns a `Results` whose
methods return lazy DuckDB relations: chain `.filter()`, `.aggregate()`, `.order()`, `.limit()`
on them, then `.df()` (pandas), `.fetchall()` or `.show()`.

- `nodes(study=None)`     one row per study and node: kind, name, status, error, the main spec
                          fields (objectives, learning rate, seed) and the full `lineage` JSON;
- `metrics(study=None)`   the long metrics table (node_id, epoch, split, metric, value, n, step)
                          with each node's study, kind and name;
- `cleaning(study=None)`  one row per clean node and evaluated epoch (0 = the starting model):
                          the lineage columns cleaning studies vary (clean.poisons, l2_weight,
                          deep_cluster.k / weight, weight_decay, ssl_weight, epochs,
                          batch_size, select.policy, ...), zero-shot top1/top5/asr with their
                          n, and that epoch's training losses (loss, mmcl, ssl, l2_to_start,
                          deep_cluster; NULL at epoch 0);
- `sql(query, params=None)` any query over the tables `studies`, `nodes`, `metrics`,
                          `checkpoints` (see `xspec.store.schema`), values bound as `?`.

Example (accuracy and ASR in [0, 1]; n is the number of images evaluated):

    from xspec.store.results import results

    r = results("xspec-work")
    best = (r.cleaning("quickstart")
             .filter("epoch >= 1 AND asr <= 0.05")
             .aggregate("pretrain_objective, max(top1) AS best_top1")
             .order("pretrain_objective"))
    print(best.df())
    r.sql("SELECT kind, status, count(*) FROM nodes WHERE study = ? GROUP BY ALL",
          ["quickstart"]).show()
    r.close()  # or: with results("xspec-work") as r: ...
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from xspec.compiler.configs import left_out
from xspec.errors import XspecError

_LINEAGE = {  # column -> (lineage key, SQL type); a key left out of an id reads as its default
    "pretrain_objective": ("pretrain.objective", "VARCHAR"),
    "clean_objective": ("clean.objective", "VARCHAR"),
    "lr": ("clean.lr", "DOUBLE"),
    "poisons": ("clean.poisons", "BIGINT"),
    "l2_weight": ("clean.l2_weight", "DOUBLE"),
    "deep_cluster_k": ("clean.deep_cluster.k", "BIGINT"),
    "deep_cluster_weight": ("clean.deep_cluster.weight", "DOUBLE"),
    "weight_decay": ("clean.weight_decay", "DOUBLE"),
    "mmcl_weight": ("clean.mmcl_weight", "DOUBLE"),
    "ssl_weight": ("clean.ssl_weight", "DOUBLE"),
    "epochs": ("clean.epochs", "BIGINT"),
    "batch_size": ("clean.batch_size", "BIGINT"),
    "select_policy": ("select.policy", "VARCHAR"),
    "shrink_perturb": ("shrink_perturb.noise", "VARCHAR"),
    "pretrain_lr": ("pretrain.lr", "DOUBLE"),
    "seed": ("poison.seed", "BIGINT"),
}


def _column(name: str, key: str, sql_type: str, alias: str = "n") -> str:
    value = f"{alias}.lineage->>'$.\"{key}\"'"
    default = left_out(key)  # the field's default where the node's id left it out
    if default not in (None, "off"):
        value = f"coalesce({value}, '{default.replace(chr(39), chr(39) * 2)}')"
    if name == "shrink_perturb":
        return f"{value} IS NOT NULL AS shrink_perturb"
    return f"TRY_CAST({value} AS {sql_type}) AS {name}"


_LINEAGE_COLUMNS = ",\n    ".join(_column(name, *spec) for name, spec in _LINEAGE.items())
_STUDY = "(CAST(? AS VARCHAR) IS NULL OR {alias}.study = ?)"

NODES = f"""
SELECT n.study, n.id AS node_id, n.kind, n.name, n.status, n.error, n.updated,
    {_LINEAGE_COLUMNS},
    n.lineage
FROM nodes n WHERE {_STUDY.format(alias="n")}
"""

METRICS = f"""
SELECT n.study, n.kind, n.name, m.*
FROM metrics m JOIN nodes n ON n.id = m.node_id
WHERE {_STUDY.format(alias="n")}
"""

CLEANING = f"""
WITH clean AS (SELECT * FROM nodes n WHERE n.kind = 'clean' AND {_STUDY.format(alias="n")}),
per_epoch AS (
    SELECT m.node_id, m.epoch,
        max(m.value) FILTER (WHERE m.split = 'eval' AND m.metric = 'top1') AS top1,
        max(m.n) FILTER (WHERE m.split = 'eval' AND m.metric = 'top1') AS top1_n,
        max(m.value) FILTER (WHERE m.split = 'eval' AND m.metric = 'top5') AS top5,
        max(m.value) FILTER (WHERE m.split = 'eval' AND m.metric = 'asr') AS asr,
        max(m.n) FILTER (WHERE m.split = 'eval' AND m.metric = 'asr') AS asr_n,
        avg(m.value) FILTER (WHERE m.split = 'train' AND m.metric = 'loss') AS loss,
        avg(m.value) FILTER (WHERE m.split = 'train' AND m.metric = 'mmcl') AS mmcl,
        avg(m.value) FILTER (WHERE m.split = 'train' AND m.metric = 'ssl') AS ssl,
        avg(m.value) FILTER (WHERE m.split = 'train' AND m.metric = 'l2_to_start')
            AS l2_to_start,
        avg(m.value) FILTER (WHERE m.split = 'train' AND m.metric = 'deep_cluster')
            AS deep_cluster
    FROM metrics m WHERE m.node_id IN (SELECT id FROM clean) AND m.split IN ('eval', 'train')
    GROUP BY m.node_id, m.epoch
)
SELECT n.study, n.id AS node_id, n.name, n.status,
    {_LINEAGE_COLUMNS},
    e.epoch, e.top1, e.top1_n, e.top5, e.asr, e.asr_n,
    e.loss, e.mmcl, e.ssl, e.l2_to_start, e.deep_cluster,
    n.lineage
FROM clean n JOIN per_epoch e ON e.node_id = n.id
WHERE e.top1 IS NOT NULL OR e.asr IS NOT NULL
ORDER BY n.study, pretrain_objective, clean_objective, lr, n.id, e.epoch
"""


class Results:
    """Relations over one workspace's results database (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db_path: Path):
        self.con = con
        self.db_path = db_path

    def nodes(self, study: str | None = None) -> duckdb.DuckDBPyRelation:
        return self.con.sql(NODES, params=[study, study])

    def metrics(self, study: str | None = None) -> duckdb.DuckDBPyRelation:
        return self.con.sql(METRICS, params=[study, study])

    def cleaning(self, study: str | None = None) -> duckdb.DuckDBPyRelation:
        return self.con.sql(CLEANING, params=[study, study])

    def sql(self, query: str, params: list | dict | None = None) -> duckdb.DuckDBPyRelation:
        return self.con.sql(query, params=params)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def results(workspace) -> Results:
    """Open a workspace's results read-only. `workspace`: its folder (holding xspec.duckdb), the
    database file itself, or an `xspec.store.workspace.Workspace`."""
    path = Path(getattr(workspace, "db_path", workspace))
    if path.is_dir():
        path = path / "xspec.duckdb"
    if not path.is_file():
        raise XspecError(f"{path}: no results database; run or ingest a study first")
    from xspec.store.db import open_duckdb

    return Results(open_duckdb(path, read_only=True, wait=30), path)
