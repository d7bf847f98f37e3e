"""Every statement of the sidecar that is not the same on its two engines is rendered here (and
conditions by `state.sql`'s dialects); the rest (the fold's set operations, stage sets, funnels,
invariants) is written once in SQL that DuckDB and Spark SQL both read.

DuckDB is embedded, the default. Spark SQL runs the same statements over Iceberg tables
(`sidecar/spark.py`, `cjo sidecar ... --engine spark`); tests/spark compares every result.

    part                DuckDB                              Spark SQL over Iceberg
    sample              TABLESAMPLE BERNOULLI (p PERCENT)   TABLESAMPLE (p PERCENT)
    percentile          quantile_cont(x, q)                 percentile(x, q)
    replace a table     CREATE _next, DROP, RENAME          CREATE OR REPLACE TABLE ... AS
    scratch table       CREATE OR REPLACE TEMP TABLE        CACHE TABLE ... AS, which the
                                                            connection computes once (a local
                                                            checkpoint, see sidecar/spark.py)
    upsert              INSERT OR REPLACE                   MERGE INTO
    transaction         BEGIN / COMMIT / ROLLBACK           none: each statement is a commit
    column types        VARCHAR, PRIMARY KEY                STRING, no keys
"""
from __future__ import annotations

from dataclasses import dataclass

from state.sql import DIALECTS, Dialect

# Column kinds of the sidecar's tables, as each engine names them.
_TYPES = {
    "duckdb": {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "boolean": "BOOLEAN"},
    "spark": {"string": "STRING", "int": "INT", "bigint": "BIGINT", "boolean": "BOOLEAN"},
}


def _q(name: str) -> str:
    return f'"{name}"'  # both engines read "x" as an identifier (Spark: by the session's setting)


@dataclass(frozen=True)
class Engine:
    name: str
    sample_clause: str  # `{p}`: percent of rows, each kept independently (Bernoulli)
    percentile_fn: str  # `{expr}`, `{q}`

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.name]

    def sample(self, percent: float, seed: int | None = None) -> str:
        clause = self.sample_clause.format(p=percent)
        return clause + (f" REPEATABLE ({int(seed)})" if seed is not None else "")

    def percentile(self, expr: str, q: float) -> str:
        return self.percentile_fn.format(expr=expr, q=q)

    def create_table(self, table: str, columns: dict[str, str], key: str | None = None) -> str:
        """CREATE TABLE IF NOT EXISTS of `columns` (name -> kind: string, int, bigint,
        boolean); `key` is a primary key where the engine has them."""
        types = _TYPES[self.name]
        cols = [f"{_q(n)} {types[k]}" + (" PRIMARY KEY" if n == key else "")
                for n, k in columns.items()]
        return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})"

    def upsert(self, table: str, columns: dict[str, str], key: str) -> str:
        """One statement that writes a row (a `?` per column, in order) in place of the row
        with the same `key`, or adds it."""
        return f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' for _ in columns)})"

    def replace_table(self, table: str, select: str) -> list[str]:
        """Statements that replace `table` by the result of `select` (which may read `table`)
        so that a reader sees the old table or the new one, never a mix: on DuckDB a build
        under another name and a rename, run inside the caller's transaction."""
        return [f"CREATE TABLE {table}_next AS {select}", f"DROP TABLE {table}",
                f"ALTER TABLE {table}_next RENAME TO {table}"]

    def temp_table(self, name: str, select: str) -> list[str]:
        """A scratch table of this connection holding the rows of `select` as they are now."""
        return [f"CREATE OR REPLACE TEMP TABLE {name} AS {select}"]

    def drop_temp(self, name: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {name}"]

    def begin(self) -> list[str]:
        return ["BEGIN TRANSACTION"]

    def commit(self) -> list[str]:
        return ["COMMIT"]

    def rollback(self) -> list[str]:
        return ["ROLLBACK"]


@dataclass(frozen=True)
class SparkEngine(Engine):
    """Spark SQL over Iceberg tables. A statement is one Iceberg commit; there are no
    transactions, so what a reader sees together is published at once (sidecar/spark.py), and
    what the sidecar writes is ordered so that a crash between two statements is safe (the
    fold is idempotent; docs/sidecar.md)."""

    def create_table(self, table: str, columns: dict[str, str], key: str | None = None) -> str:
        return super().create_table(table, columns) + " USING iceberg"

    def upsert(self, table: str, columns: dict[str, str], key: str) -> str:
        types = _TYPES[self.name]
        values = ", ".join(f"CAST(? AS {types[k]}) AS {_q(n)}" for n, k in columns.items())
        return (f"MERGE INTO {table} t USING (SELECT {values}) s ON t.{_q(key)} = s.{_q(key)} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")

    def replace_table(self, table: str, select: str) -> list[str]:
        # One atomic commit of a new table snapshot; readers keep the snapshot they read.
        return [f"CREATE OR REPLACE TABLE {table} USING iceberg AS {select}"]

    def temp_table(self, name: str, select: str) -> list[str]:
        # The rows as they are now, for this session: SparkConnection computes this statement
        # once (a sample, an audience's SQL must not give other rows when read again).
        return [*self.drop_temp(name), f"CACHE TABLE {name} AS {select}"]

    def drop_temp(self, name: str) -> list[str]:
        return [f"UNCACHE TABLE IF EXISTS {name}", f"DROP VIEW IF EXISTS {name}"]

    def begin(self) -> list[str]:
        return []

    commit = rollback = begin


ENGINES: dict[str, Engine] = {
    "duckdb": Engine("duckdb", "TABLESAMPLE BERNOULLI ({p} PERCENT)",
                     "quantile_cont({expr}, {q})"),
    # Spark samples rows with `TABLESAMPLE (p PERCENT)` (Bernoulli too); percentile
    # interpolates linearly between ranks as quantile_cont does.
    "spark": SparkEngine("spark", "TABLESAMPLE ({p} PERCENT)", "percentile({expr}, {q})"),
}


def engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown SQL engine {name!r} (known: {', '.join(ENGINES)})") from None


def engine_of(db) -> Engine:
    """The engine of a connection: a Spark one says so (sidecar.spark.SparkConnection), any
    other is DuckDB's."""
    return ENGINES[getattr(db, "engine_name", "duckdb")]


def run(db, statements: list[str], params=None) -> None:
    for statement in statements:
        db.execute(statement, params) if params else db.execute(statement)
