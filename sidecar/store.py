"""The sparse journey table in DuckDB, kept the way Treasure Data keeps its state table: new
snapshot rows go to a staging table, the new state is built from the live table and the staging
table with set operations, and replaces the live table by a rename inside one transaction, so a
reader sees either the old table or the new one, never a mix.

A snapshot file replaces everything known of the profiles it names (its `profile` marker rows):
    new = (live EXCEPT rows of those profiles) UNION ALL staged rows

The columns are state/sparse.py's. `last_reached` came after the others: a file or a database
written before it lacks the column, and it reads as null there (the funnels take it as `first`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from sidecar.engines import ENGINES

DUCKDB = ENGINES["duckdb"]
LIVE = "journey_state"
TYPES = {"profile_id": "VARCHAR", "journey": "VARCHAR", "version": "INTEGER", "key": "VARCHAR",
         "first": "BIGINT", "last_left": "BIGINT", "value": "VARCHAR", "last_reached": "BIGINT"}
COLUMNS = ", ".join(f'"{name}" {kind}' for name, kind in TYPES.items())
ADDED = ("last_reached",)  # columns newer than the first snapshot files and databases
SELECT = ", ".join(f'"{name}"' for name in TYPES)  # every column, in the table's order


def add_missing_columns(db, table: str) -> None:
    """Give a table made before the newer columns existed those columns (null)."""
    have = {row[0] for row in db.execute(f"DESCRIBE {table}").fetchall()}
    for name in ADDED:
        if name not in have:
            db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {TYPES[name]}')


class SnapshotError(RuntimeError):
    """A snapshot file is missing or does not match its manifest."""


class SparseStore:
    def __init__(self, path: str = ":memory:") -> None:
        self.db = duckdb.connect(path)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {LIVE} ({COLUMNS})")
        add_missing_columns(self.db, LIVE)  # a database from before `last_reached`
        self.db.execute("CREATE TABLE IF NOT EXISTS loaded_files (path VARCHAR PRIMARY KEY, "
                        "\"partition\" INTEGER, \"offset\" BIGINT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS partition_offsets (\"partition\" INTEGER "
                        "PRIMARY KEY, \"offset\" BIGINT)")
        # What the snapshots' marker rows say of each profile: where it lives, the time of its
        # last event, whether a merge (or a profile limit) makes a replay differ from it.
        self.db.execute("CREATE TABLE IF NOT EXISTS snapshot_profiles (profile_id VARCHAR, "
                        "\"partition\" INTEGER, last_seen BIGINT, merged BOOLEAN)")

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
            data = Path(f["path"]).read_bytes() if "://" not in f["path"] else None
            if data is not None and hashlib.sha256(data).hexdigest() != f["sha256"]:
                raise SnapshotError(f"{f['path']}: checksum does not match the manifest")
            staged += self._fold(f["path"], manifest["partition"], f["offset"],
                                 full=f["kind"] == "full")
        return staged

    def checkpoint(self) -> None:
        """Let DuckDB reuse the space of the tables the folds replaced (it checkpoints by
        itself only when its write-ahead log grows past 16 MB, which a fold's log does not)."""
        self.db.execute("CHECKPOINT")

    def _fold(self, path: str, partition: int, offset: int, full: bool) -> int:
        db = self.db
        db.execute("BEGIN TRANSACTION")
        try:
            db.execute("CREATE OR REPLACE TEMP TABLE staging AS "
                       "SELECT * FROM read_parquet(?)", [path])
            add_missing_columns(db, "staging")  # a file from before `last_reached`
            # A full snapshot of a partition replaces the partition's profiles: those it names,
            # and the ones loaded from this partition before (a merged visitor may be gone).
            scope = ("SELECT profile_id FROM staging WHERE key = 'profile' UNION "
                     f"SELECT profile_id FROM snapshot_profiles WHERE \"partition\" = {int(partition)}"
                     if full else "SELECT profile_id FROM staging WHERE key = 'profile'")
            new = (f"SELECT {SELECT} FROM {LIVE} WHERE profile_id NOT IN ({scope}) "
                   f"UNION ALL SELECT {SELECT} FROM staging WHERE key <> 'profile'")
            for statement in DUCKDB.replace_table(LIVE, new):
                db.execute(statement)
            db.execute(f"DELETE FROM snapshot_profiles WHERE profile_id IN ({scope})")
            db.execute("INSERT INTO snapshot_profiles SELECT profile_id, ?, \"first\", "
                       "value IS NOT NULL FROM staging WHERE key = 'profile'", [partition])
            db.execute("INSERT INTO loaded_files VALUES (?, ?, ?)", [path, partition, offset])
            db.execute("INSERT OR REPLACE INTO partition_offsets VALUES (?, ?)",
                       [partition, offset])
            rows = db.execute("SELECT count(*) FROM staging").fetchone()[0]
            db.execute("DROP TABLE staging")  # else it stays in memory until the next fold
            db.execute("COMMIT")
            return rows
        except Exception:
            db.execute("ROLLBACK")
            raise
