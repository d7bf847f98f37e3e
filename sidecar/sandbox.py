"""The DuckDB connection that runs SQL the sidecar did not write: batch audiences (`sql:`
segments) and `cjo sidecar query`.

It is opened with `state.sql.LOCKED_DUCKDB`: no file, URL or other database can be read or
written (`enable_external_access`), no extension installed or loaded on demand, and the
configuration is locked before the first statement, so no SQL can turn any of it back on. What
it reads: the tables in the sidecar's database file, and the archived events, which the trusted
connection reads as a view over Parquet files (`sidecar.archive`) and which are here an Arrow
dataset that pyarrow opens for DuckDB (the same files, chosen by the sidecar, not by the SQL;
about three times slower to scan than DuckDB's own reader).

DuckDB lets one process at a time write a database file, and in one process one configuration
per file: the follower closes its trusted connection before it opens this one on the same file,
and opens the trusted one again after.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, TypeVar

import duckdb

from sidecar.archive import events_dataset
from state.sql import LOCKED_DUCKDB

T = TypeVar("T")


class DatabaseBusy(RuntimeError):
    """Another process holds the lock on the sidecar's database file."""


def open_database(opener: Callable[[], T], path: str | Path, wait: float = 0.0) -> T:
    """`opener()`, which opens the database at `path`; while another process holds the file's
    lock, try again for up to `wait` seconds, then DatabaseBusy."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return opener()
        except duckdb.IOException as exc:
            if "Could not set lock" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseBusy(f"another sidecar holds the lock on {path}") from None
            time.sleep(0.1)


def connect(path: str | Path = ":memory:", archive: Path | None = None, read_only: bool = False,
            wait: float = 0.0) -> duckdb.DuckDBPyConnection:
    """A locked connection to the database at `path`; with `archive`, `events` is the event
    archive in that directory (this connection's view of it: a cursor does not see it)."""
    db = open_database(lambda: duckdb.connect(str(path), read_only=read_only,
                                              config=dict(LOCKED_DUCKDB)), path, wait)
    if archive is not None:
        db.register("events", events_dataset(archive))
    return db


def require_locked(db) -> None:
    """Refuse to go on with a connection that could read files or change its settings (on
    Spark: one whose SQL may name files, `spark.sql.runSQLOnFiles`)."""
    if getattr(db, "engine_name", "duckdb") == "spark":
        if db.spark.conf.get("spark.sql.runSQLOnFiles") != "false":
            raise RuntimeError("SQL the sidecar did not write runs on Spark only with "
                               "spark.sql.runSQLOnFiles=false (sidecar.spark.session)")
        return
    names = list(LOCKED_DUCKDB)
    found = dict(db.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                            f"({', '.join('?' for _ in names)})", names).fetchall())
    if found != {name: str(value).lower() for name, value in LOCKED_DUCKDB.items()}:
        raise RuntimeError("SQL the sidecar did not write runs only on a locked connection "
                           "(sidecar.sandbox.connect)")
