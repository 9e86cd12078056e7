"""DuckDB schema of the results store, with numbered migrations.

Only the CLI process opens the database; jobs write per-run files that `ingest` reads.

Tables
- studies(name, spec_path, spec JSON, updated): one row per study ingested.
- nodes(study, id, kind, name, config JSON, deps JSON, lineage JSON, status, error, updated):
  one row per (study, node); `detail` (migration 2) is the node's status.json. `lineage` flattens the configs of the node and all its upstream
  nodes as {"<kind>.<field>": value}, e.g. {"pretrain.objective": "mmcl", "clean.lr": 1e-4},
  each setting under one key (`xspec.compiler.lineage`: the seed is "poison.seed"), so
  reports select runs with SQL over spec fields.
- metrics(node_id, epoch, split, metric, value, n, step): long format. split is "eval" for
  zero-shot evaluation (metrics top1, top5, asr; value is a fraction in [0, 1], n its
  denominator), "train" for losses averaged over the epoch (metrics loss, mmcl, ssl, ...) and
  "perf" for the epoch's loader figures (pairs_per_s over all ranks; data_wait_share, the share
  of the epoch's wall time the training loop waited for the next batch).
  Epoch 0 of a clean node is the starting model. Other evaluation sets than the primary one
  (`[evaluate.sets]`, `[evaluate.retrieval]`) log split "eval:<set>" (top1, top5, asr) and
  "retrieval:<set>" (i2t_r1.., t2i_r1.., asr_r1..); `eval_set` (migration 3) names the set of
  every evaluation row, the primary one's included (`evaluate.primary`, default "eval").
- checkpoints(node_id, epoch, path).
- provenance(node_id, code, xspec_version, git_commit, git_dirty, snapshot, plugins JSON, python,
  torch, open_clip, cuda, cudnn, device, device_name, device_count, host, started,
  epoch_seconds JSON, previous JSON): each run's provenance.json (migration 4). `code` is a
  short hash of what identifies the code (version, commit, uncommitted changes, snapshot,
  plugin file hashes): rows of one table with different `code` came from different code.

Each migration runs in one transaction with its row in `_migrations`, so a process killed
mid-migration leaves the database as it was before it. Migrations are also idempotent
(`IF NOT EXISTS`): a database half-created by xspec versions that ran them statement by
statement is completed on the next open.
"""

from __future__ import annotations

from collections.abc import Callable

MIGRATIONS: dict[int, Callable] = {}


def migration(number: int):
    def register(fn):
        if number in MIGRATIONS:
            raise ValueError(f"duplicate migration number {number}")
        MIGRATIONS[number] = fn
        return fn

    return register


@migration(1)
def _initial(con) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS studies (
            name VARCHAR PRIMARY KEY, spec_path VARCHAR, spec JSON, updated TIMESTAMP
        );
        CREATE TABLE IF NOT EXISTS nodes (
            study VARCHAR, id VARCHAR, kind VARCHAR, name VARCHAR, config JSON, deps JSON,
            lineage JSON, status VARCHAR, error VARCHAR, updated TIMESTAMP,
            PRIMARY KEY (study, id)
        );
        CREATE TABLE IF NOT EXISTS metrics (
            node_id VARCHAR, epoch INTEGER, split VARCHAR, metric VARCHAR, value DOUBLE,
            n BIGINT, step BIGINT
        );
        CREATE TABLE IF NOT EXISTS checkpoints (node_id VARCHAR, epoch INTEGER, path VARCHAR);
        """
    )


@migration(2)
def _node_detail(con) -> None:
    """status.json of each node (bad image counts, world size, timings) for reports."""
    con.execute("ALTER TABLE nodes ADD COLUMN IF NOT EXISTS detail JSON")


@migration(3)
def _eval_set(con) -> None:
    """metrics.eval_set: the evaluation set a row measures (the primary set's name for split
    "eval", <name> for "eval:<name>", "retrieval:<name>" and "probe:<name>"), NULL otherwise."""
    con.execute("ALTER TABLE metrics ADD COLUMN IF NOT EXISTS eval_set VARCHAR")
    fill = EVAL_SET.format(primary="'eval'")
    con.execute(f"UPDATE metrics SET eval_set = {fill} WHERE eval_set IS NULL")


# The evaluation set of a metrics row, from its split; {primary} is the primary set's name.
EVAL_SET = ("CASE WHEN split = 'eval' THEN {primary} WHEN regexp_matches(split, "
            "'^(eval|retrieval|probe):.') THEN split_part(split, ':', 2) END")


@migration(4)
def _provenance(con) -> None:
    """Which code and machine produced each run (`xspec.store.provenance`)."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS provenance (
            node_id VARCHAR PRIMARY KEY, code VARCHAR, xspec_version VARCHAR,
            git_commit VARCHAR, git_dirty VARCHAR, snapshot VARCHAR, plugins JSON,
            python VARCHAR, torch VARCHAR, open_clip VARCHAR, cuda VARCHAR, cudnn VARCHAR,
            device VARCHAR, device_name VARCHAR, device_count INTEGER, host VARCHAR,
            started TIMESTAMP, epoch_seconds JSON, previous JSON
        );
        """
    )


def migrate(con) -> None:
    """Apply the migrations not yet recorded in `_migrations`, in order."""
    con.execute("CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY)")
    done = {row[0] for row in con.execute("SELECT number FROM _migrations").fetchall()}
    for number in sorted(MIGRATIONS):
        if number in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            MIGRATIONS[number](con)
            con.execute("INSERT INTO _migrations VALUES (?)", [number])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
