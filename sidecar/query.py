"""Reading the sidecar's tables: `cjo sidecar query SQL` and a small Python API.

    from sidecar.query import SidecarReader
    with SidecarReader(settings) as sidecar:
        sidecar.sql("SELECT count(*) AS n FROM events")         # [{"n": ...}]
        sidecar.funnel("onboarding", 1)                          # [StageCounts, ...]
        sidecar.in_stage("onboarding", 1, "browsing")            # {profile ids}

Tables: `journey_state` (the sparse table), `snapshot_profiles`, `events` (the archive, long
format: see state/sql.py), `audience_members`, `partition_offsets`, `archive_offsets`.
The database is opened read-only; DuckDB lets one process write a database file, so while
`cjo sidecar run` follows the topics, query the funnels file it writes or stop it first. The
connection is locked (sidecar.sandbox): the SQL reads those tables and nothing else, no file,
no URL, no extension. What it prints has control and bidi characters escaped (`\x1b`,
`\u202e`), so a value cannot drive the terminal or reorder what it shows.

With `--engine spark` (`SidecarReader(settings, spark=SparkOptions(...))`) the reader is a Spark
session over the app's Iceberg tables, pinned to the newest published fold (sidecar/spark.py),
so it may read while `cjo sidecar run --engine spark` follows; the SQL is checked by DuckDB's
parser and by Spark's.
"""
from __future__ import annotations

import sys
import unicodedata

import duckdb

from cjo.settings import Settings
from sidecar.follower import archive_path, database_path
from sidecar.funnels import StageCounts, funnel, stage_sets, version_rows
from sidecar.sandbox import DatabaseBusy, connect
from state.sql import read_only_select_problem


class SidecarUnavailable(RuntimeError):
    """The sidecar's database is missing or held by a running `cjo sidecar run`."""


class SidecarReader:
    def __init__(self, settings: Settings, spark=None) -> None:
        if spark is not None:
            from sidecar.archive import FILES, SCHEMA
            from sidecar.spark import pin

            self.db = spark.connect(settings)
            pin(self.db)
            self.db.register_parquet("events", sorted(
                str(p) for p in archive_path(settings, spark).glob(FILES)), SCHEMA)
            return
        path = database_path(settings)
        if not path.exists():
            raise SidecarUnavailable(f"no sidecar database at {path}: run `cjo sidecar run "
                                     "--once` first")
        try:
            self.db = connect(path, archive_path(settings), read_only=True)
        except (DatabaseBusy, duckdb.IOException) as exc:
            raise SidecarUnavailable(f"{path} is in use (is `cjo sidecar run` following?): "
                                     f"{str(exc).splitlines()[0]}") from None

    def __enter__(self) -> "SidecarReader":
        return self

    def __exit__(self, *exc) -> None:
        self.db.close()

    def sql(self, text: str) -> list[dict]:
        """Rows of one read-only SELECT, as dicts."""
        problem = read_only_select_problem(text)
        if problem is None and getattr(self.db, "engine_name", "duckdb") == "spark":
            from sidecar.spark import select_problem

            problem = select_problem(self.db, text)
        if problem:
            raise ValueError(problem)
        result = self.db.sql(text)
        return [dict(zip(result.columns, row)) for row in result.fetchall()]

    def funnel(self, journey: str, version: int, order: list[str] | None = None
               ) -> list[StageCounts]:
        # The stage sets need a scratch table: a read-only database has a writable temp one.
        return funnel(self.db, journey, version, order)

    def in_stage(self, journey: str, version: int, stage: str) -> set[str]:
        """The profiles in `stage` now (the in_now set)."""
        with version_rows(self.db, journey, version):
            return {r[0] for r in self.db.execute(stage_sets(stage, None)["in_now"]).fetchall()}


# Unicode categories printed as escapes: control, format (bidi overrides, zero-width),
# surrogate, private use, unassigned, line and paragraph separators.
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` with every character of the _ESCAPED categories written as its escape."""
    return "".join(ch if unicodedata.category(ch) not in _ESCAPED else
                   f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else
                   f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"
                   for ch in text)


def print_rows(rows: list[dict], limit: int) -> None:
    if not rows:
        print("(no rows)")
        return
    columns = [printable(str(c)) for c in rows[0]]
    shown = [[("NULL" if v is None else printable(str(v))) for v in r.values()]
             for r in rows[:limit]]
    widths = [max(len(c), *(len(r[i]) for r in shown)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in shown:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    more = len(rows) - len(shown)
    print(f"({len(rows)} rows" + (f", {more} not shown: --limit)" if more > 0 else ")"))


def run_query(settings: Settings, text: str, limit: int, spark=None) -> int:
    from sidecar.audiences import spark_errors
    from sidecar.spark import SparkUnavailable

    try:
        with SidecarReader(settings, spark) as sidecar:
            rows = sidecar.sql(text)
    except (SidecarUnavailable, SparkUnavailable, ValueError, duckdb.Error,
            *spark_errors()) as exc:
        print(f"cjo sidecar query: {printable((str(exc).splitlines() or ['failed'])[0])}",
              file=sys.stderr)
        return 2
    print_rows(rows, limit)
    return 0
