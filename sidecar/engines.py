"""The few places where SQL engines differ, rendered per engine; every other statement of the
sidecar (the fold's set operations, stage sets, funnels, invariants, conditions compiled by
`state.sql`) is written once in SQL that DuckDB, Trino and Spark SQL all read.

DuckDB is embedded and the one the sidecar runs. Trino and Spark SQL are there so that the same
computations can run where the data outgrows one machine (see docs/sidecar.md); their
renderings are unit-tested as text, not run here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Engine:
    name: str
    sample_clause: str  # `{p}`: percent of rows, each kept independently (Bernoulli)
    percentile_fn: str  # `{expr}`, `{q}`

    def sample(self, percent: float) -> str:
        return self.sample_clause.format(p=percent)

    def percentile(self, expr: str, q: float) -> str:
        return self.percentile_fn.format(expr=expr, q=q)

    def replace_table(self, table: str, select: str) -> list[str]:
        """Statements that replace `table` by the result of `select` (which may read `table`)
        so that a reader sees the old table or the new one, never a mix: on DuckDB a build
        under another name and a rename, run inside the caller's transaction."""
        return [f"CREATE TABLE {table}_next AS {select}", f"DROP TABLE {table}",
                f"ALTER TABLE {table}_next RENAME TO {table}"]


@dataclass(frozen=True)
class TableFormatEngine(Engine):
    """Trino and Spark SQL over an Iceberg (or Delta) table: CREATE OR REPLACE is one atomic
    commit of a new table snapshot; readers keep reading the snapshot they started with."""

    def replace_table(self, table: str, select: str) -> list[str]:
        return [f"CREATE OR REPLACE TABLE {table} AS {select}"]


ENGINES = {
    "duckdb": Engine("duckdb", "TABLESAMPLE BERNOULLI ({p} PERCENT)",
                     "quantile_cont({expr}, {q})"),
    # Trino's percentage has no PERCENT keyword; approx_percentile is its only percentile.
    "trino": TableFormatEngine("trino", "TABLESAMPLE BERNOULLI ({p})",
                               "approx_percentile({expr}, {q})"),
    # Spark samples rows with `TABLESAMPLE (p PERCENT)`.
    "spark": TableFormatEngine("spark", "TABLESAMPLE ({p} PERCENT)",
                               "percentile({expr}, {q})"),
}


def engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown SQL engine {name!r} (known: {', '.join(ENGINES)})") from None
