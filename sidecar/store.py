"""The sparse journey table in DuckDB, kept the way Treasure Data keeps its state table: new
snapshot rows go to a staging table, the new state is built from the live table and the staging
table with set operations, and replaces the live table by a rename inside one transaction, so a
reader sees either the old table or the new one, never a mix.

A snapshot file replaces everything known of the profiles it names (its `profile` marker rows):
    new = (live EXCEPT rows of those profiles) UNION ALL staged rows

The columns are state/sparse.py's. `last_reached` came after the others: a file or a database
written before it lacks the column, and it reads as null there (the funnels take it as `first`).

The same store runs on Spark SQL over Iceberg (`SparseStore.on(SparkConnection)`): there each
statement is its own commit, ordered so that folding a file again after a crash gives the same
tables (each file replaces its profiles), and `checkpoint` publishes a batch of folds to readers
at once (sidecar/spark.py).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sidecar.engines import ENGINES, engine_of, run

DUCKDB = ENGINES["duckdb"]
LIVE = "journey_state"
# Column kinds (sidecar.engines renders them per engine).
KINDS = {"profile_id": "string", "journey": "string", "version": "int", "key": "string",
         "first": "bigint", "last_left": "bigint", "value": "string", "last_reached": "bigint"}
TYPES = {"profile_id": "VARCHAR", "journey": "VARCHAR", "version": "INTEGER", "key": "VARCHAR",
         "first": "BIGINT", "last_left": "BIGINT", "value": "VARCHAR", "last_reached": "BIGINT"}
COLUMNS = ", ".join(f'"{name}" {kind}' for name, kind in TYPES.items())
ADDED = ("last_reached",)  # columns newer than the first snapshot files and databases
SELECT = ", ".join(f'"{name}"' for name in TYPES)  # every column, in the table's order
TABLES = {  # the store's other tables: columns and the key (a primary key on DuckDB)
    "loaded_files": ({"path": "string", "partition": "int", "offset": "bigint"}, "path"),
    "partition_offsets": ({"partition": "int", "offset": "bigint"}, "partition"),
    # What the snapshots' marker rows say of each profile: where it lives, the time of its
    # last event, whether a merge (or a profile limit) makes a replay differ from it.
    "snapshot_profiles": ({"profile_id": "string", "partition": "int", "last_seen": "bigint",
                           "merged": "boolean"}, None),
}


def add_missing_columns(db, table: str) -> None:
    """Give a table made before the newer columns existed those columns (null)."""
    have = {row[0] for row in db.execute(f"DESCRIBE {table}").fetchall()}
    for name in ADDED:
        if name not in have:
            db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {TYPES[name]}')


def read_file(path: str) -> bytes:
    """A snapshot file's bytes, from a local path or a URI of any filesystem pyarrow knows
    (file://, s3://, gs://, abfs://, hdfs://; credentials from the environment as pyarrow
    reads them)."""
    if "://" not in path:
        return Path(path).read_bytes()
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(path)
    with filesystem.open_input_stream(inner) as f:
        return f.read()


class SnapshotError(RuntimeError):
    """A snapshot file is missing or does not match its manifest."""


class SparseStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._setup(duckdb.connect(path))

    @classmethod
    def on(cls, db) -> "SparseStore":
        """The store on an open connection (a sidecar.spark.SparkConnection)."""
        store = cls.__new__(cls)
        store._setup(db)
        return store

    def _setup(self, db) -> None:
        self.db, self.engine = db, engine_of(db)
        db.execute(self.engine.create_table(LIVE, KINDS))
        if self.engine.name == "duckdb":
            add_missing_columns(db, LIVE)  # a database from before `last_reached`
        for table, (columns, key) in TABLES.items():
            db.execute(self.engine.create_table(table, columns, key))

    def loaded(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT path FROM loaded_files").fetchall()}

    def load_manifest(self, manifest: dict) -> int:
        """Fold the manifest's files not loaded yet, in order; returns the rows staged."""
        done = self.loaded()
        staged = 0
        known = self.db.execute('SELECT "offset" FROM partition_offsets WHERE "partition" = ?',
                                [manifest["partition"]]).fetchone()
        if known and manifest["offset"] < known[0]:
            return 0  # older than what is loaded: a worker that lost the partition, late
        for f in manifest["files"]:
            if f["path"] in done:
                continue
            data = read_file(f["path"])
            if hashlib.sha256(data).hexdigest() != f["sha256"]:
                raise SnapshotError(f"{f['path']}: checksum does not match the manifest")
            staged += self._fold(f["path"], manifest["partition"], f["offset"],
                                 full=f["kind"] == "full", data=data)
        return staged

    def checkpoint(self) -> None:
        """After a batch of folds. DuckDB: reuse the space of the tables the folds replaced (it
        checkpoints by itself only when its write-ahead log grows past 16 MB, which a fold's
        log does not). Spark: publish the folds to readers (sidecar.spark.publish)."""
        if self.engine.name == "spark":
            from sidecar.spark import publish

            publish(self.db)
        else:
            self.db.execute("CHECKPOINT")

    def _stage(self, path: str, data: bytes | None) -> None:
        """The file's rows as the scratch table `staging` (a file from before `last_reached`
        reads it as null). Spark reads the path itself (its executors, by their Hadoop
        filesystems); DuckDB reads a local path itself and a URI's bytes, already read."""
        if self.engine.name == "spark":
            from topology.pipeline.snapshots import SCHEMA

            self.db.register_parquet("staging", [path], SCHEMA)
            return
        if "://" in path and data is not None:
            self.db.register("staging_file", pq.read_table(pa.BufferReader(data)))
            self.db.execute("CREATE OR REPLACE TEMP TABLE staging AS SELECT * FROM staging_file")
            self.db.unregister("staging_file")
        else:
            self.db.execute("CREATE OR REPLACE TEMP TABLE staging AS "
                            "SELECT * FROM read_parquet(?)", [path])
        add_missing_columns(self.db, "staging")

    def _fold(self, path: str, partition: int, offset: int, full: bool,
              data: bytes | None = None) -> int:
        """Fold one file. On DuckDB in one transaction; on Spark statement by statement in an
        order that makes folding the same file again give the same tables (a crash before
        `loaded_files` names it): the live table first, the bookkeeping last."""
        db, e = self.db, self.engine
        run(db, e.begin())
        try:
            self._stage(path, data)
            # A full snapshot of a partition replaces the partition's profiles: those it names,
            # and the ones loaded from this partition before (a merged visitor may be gone).
            scope = ("SELECT profile_id FROM staging WHERE key = 'profile' UNION "
                     f"SELECT profile_id FROM snapshot_profiles WHERE \"partition\" = {int(partition)}"
                     if full else "SELECT profile_id FROM staging WHERE key = 'profile'")
            new = (f"SELECT {SELECT} FROM {LIVE} WHERE profile_id NOT IN ({scope}) "
                   f"UNION ALL SELECT {SELECT} FROM staging WHERE key <> 'profile'")
            run(db, e.replace_table(LIVE, new))
            db.execute(f"DELETE FROM snapshot_profiles WHERE profile_id IN ({scope})")
            db.execute("INSERT INTO snapshot_profiles SELECT profile_id, ?, \"first\", "
                       "value IS NOT NULL FROM staging WHERE key = 'profile'", [partition])
            db.execute("INSERT INTO loaded_files VALUES (?, ?, ?)", [path, partition, offset])
            db.execute(e.upsert("partition_offsets", TABLES["partition_offsets"][0], "partition"),
                       [partition, offset])
            rows = db.execute("SELECT count(*) FROM staging").fetchone()[0]
            # Else it stays in memory until the next fold.
            run(db, e.drop_temp("staging") if e.name == "duckdb" else
                ["DROP VIEW IF EXISTS staging"])
            run(db, e.commit())
            return rows
        except Exception:
            run(db, e.rollback())
            raise
