"""The sidecar on Spark SQL over Iceberg tables (`cjo sidecar run|check|query --engine spark`).

A process starts one Spark driver (`session`, 12-30 s here) and opens a `SparkConnection` per
use: a new session on it with its own temporary views and current namespace, `USE`d so that the
sidecar's SQL names its tables as on DuckDB (`journey_state`, ...). By default the catalog `cjo`
is an Iceberg Hadoop catalog in <data dir>/sidecar/iceberg and the master `local[2]`; a cluster
gives its own with `--master` and `--spark-conf` (a REST catalog:
`spark.sql.catalog.cjo.type=rest`, `spark.sql.catalog.cjo.uri=...`). The namespace is the app id.

The connection answers the part of DuckDB's Python API the sidecar uses (`execute(sql,
params).fetchall()`), so store, funnels, check and audiences run unchanged on it; parameters
(`?`, `$name`) are bound as literals written by `state.sql.SparkDialect`.

Publishing: a fold writes several Iceberg tables, one commit each. When the folds of a batch are
done, `publish` appends one row to `published_folds` naming the current snapshot of each fold
table; a reader (`pin`) reads the newest row and sees each table `VERSION AS OF` that snapshot,
so it never sees tables of two different folds (docs/sidecar.md, "Spark SQL over Iceberg").

SQL the sidecar did not write (audiences, `cjo sidecar query`) is checked by DuckDB's parser
(`state.sql.read_only_select_problem`) and then by Spark's own (`select_problem`).
"""
from __future__ import annotations

import re
import time

import pyarrow as pa

from sidecar.engines import ENGINES
from state.sql import SIDECAR_TABLES

DEFAULT_MASTER = "local[2]"
CATALOG = "cjo"
# The tables one fold writes, published together.
FOLD_TABLES = ("journey_state", "snapshot_profiles", "loaded_files", "partition_offsets")
FOLDS = "published_folds"
_DIALECT = ENGINES["spark"].dialect

_SESSION = None


class SparkUnavailable(RuntimeError):
    """Spark could not start (no pyspark, no Java, no Iceberg jar); the message says why."""


def session(master: str | None = None, conf: dict[str, str] | None = None):
    """The process's Spark driver, started on first use with the sidecar's settings; `conf`
    (Spark properties) overrides them."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("pyspark is not installed: pip install -e '.[spark]' "
                               "(make install does)") from None
    from deploy.iceberg import IcebergError, install

    try:
        jar = install()
    except IcebergError as exc:
        raise SparkUnavailable(str(exc)) from None
    master = master or DEFAULT_MASTER
    props = {
        "spark.jars": str(jar),
        "spark.sql.extensions":
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        # "first" is a column, as in DuckDB and standard SQL (not a string).
        "spark.sql.ansi.doubleQuotedIdentifiers": "true",
        # No `parquet.`/path``: SQL reads tables, never files (the sidecar reads files itself).
        "spark.sql.runSQLOnFiles": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
    }
    if master.startswith("local"):
        props.update({"spark.ui.enabled": "false", "spark.driver.memory": "2g"})
    props.update(conf or {})
    builder = SparkSession.builder.master(master).appName("cjo-sidecar")
    for key, value in props.items():
        builder = builder.config(key, value)
    try:
        _SESSION = builder.getOrCreate()
    except Exception as exc:  # no Java, a bad master: py4j and Spark raise many kinds
        raise SparkUnavailable(f"Spark did not start: {str(exc).splitlines()[0]}") from None
    _SESSION.sparkContext.setLogLevel("FATAL")  # errors reach the caller as exceptions
    return _SESSION


def namespace(app_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", app_id)


class SparkResult:
    def __init__(self, df) -> None:
        self.df = df
        self.columns = list(df.columns) if df is not None else []

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self.df.collect()] if self.df is not None else []

    def fetchone(self) -> tuple | None:
        rows = self.df.take(1) if self.df is not None else []
        return tuple(rows[0]) if rows else None


class SparkConnection:
    """A Spark session of the sidecar, used in the sidecar's code as a DuckDB connection is."""

    engine_name = "spark"

    def __init__(self, settings, master: str | None = None, conf: dict[str, str] | None = None,
                 catalog: str = CATALOG) -> None:
        self.spark = session(master, conf).newSession()
        for key, value in (conf or {}).items():
            if key.startswith("spark.sql."):  # runtime settings reach every session
                self.spark.conf.set(key, value)
        if self.spark.conf.get(f"spark.sql.catalog.{catalog}", None) is None:
            warehouse = settings.data_dir.resolve() / "sidecar" / "iceberg"
            self.spark.conf.set(f"spark.sql.catalog.{catalog}",
                                "org.apache.iceberg.spark.SparkCatalog")
            self.spark.conf.set(f"spark.sql.catalog.{catalog}.type", "hadoop")
            self.spark.conf.set(f"spark.sql.catalog.{catalog}.warehouse", warehouse.as_uri())
        self.catalog, self.namespace = catalog, namespace(settings.app_id)
        self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.qualified(None)}")
        self.spark.sql(f"USE {self.qualified(None)}")

    def qualified(self, table: str | None) -> str:
        parts = [self.catalog, self.namespace] + ([table] if table else [])
        return ".".join(f"`{p}`" for p in parts)

    def execute(self, sql: str, params=None) -> SparkResult:
        sql = bind(sql, params)
        scratch = _SCRATCH.fullmatch(sql)
        if scratch:  # sidecar.engines' scratch table: computed once, here and now
            df = self.spark.sql(scratch.group(2)).localCheckpoint(eager=True)
            df.createOrReplaceTempView(scratch.group(1))
            return SparkResult(None)
        return SparkResult(self.spark.sql(sql))

    def sql(self, text: str) -> SparkResult:
        """SQL the sidecar did not write, run as written (checked before by the caller)."""
        return SparkResult(self.spark.sql(text))

    def register_parquet(self, name: str, paths: list[str], schema: pa.Schema) -> None:
        """The temporary view `name` over Parquet files, read with `schema` (a column a file
        lacks reads as null); no files: an empty view."""
        ddl = ", ".join(f"`{f.name}` {_SPARK_TYPES[f.type]}" for f in schema)
        reader = self.spark.read.schema(ddl)
        df = reader.parquet(*paths) if paths else self.spark.createDataFrame([], ddl)
        df.createOrReplaceTempView(name)

    def close(self) -> None:
        for view in self.spark.catalog.listTables():
            if view.isTemporary:
                self.spark.sql(f"UNCACHE TABLE IF EXISTS `{view.name}`")


# A scratch table (SparkEngine.temp_table). Spark's CACHE TABLE keeps a view whose rows may be
# computed again (when the view's plan is analysed again, or a cached block is lost), which gives
# other rows for a sample or an audience's SQL; a local checkpoint is computed once and read
# from then on (lost with an executor: the statement then fails, it never gives other rows).
_SCRATCH = re.compile(r"CACHE TABLE ([A-Za-z_][A-Za-z0-9_]*) AS (.*)", re.S)

_SPARK_TYPES = {pa.string(): "STRING", pa.int64(): "BIGINT", pa.int32(): "INT",
                pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE"}

# Quoted strings and identifiers and comments, kept as they are; `?` and `$name` outside them.
_TOKENS = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|--[^\n]*|\?|"
                     r"\$[A-Za-z_][A-Za-z0-9_]*")


def literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return _DIALECT.boolean(value)
    if isinstance(value, int):
        return _DIALECT.integer(value)
    if isinstance(value, float):
        return _DIALECT.double(value)
    if isinstance(value, str):
        return _DIALECT.string(value)
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def bind(sql: str, params) -> str:
    """`sql` with its `?` (params a sequence) or `$name` (params a mapping) markers replaced by
    literals."""
    if not params:
        return sql
    positional = iter(params) if not isinstance(params, dict) else None

    def one(match: re.Match) -> str:
        token = match.group(0)
        if token == "?":
            return literal(next(positional))
        if token.startswith("$"):
            return literal(params[token[1:]])
        return token

    return _TOKENS.sub(one, sql)

# ---------------------------------------------------------------- publish and pin


def prepare_publish(db: SparkConnection) -> None:
    db.execute(ENGINES["spark"].create_table(FOLDS, {
        "fold": "bigint", "published_at": "bigint",
        **{table: "bigint" for table in FOLD_TABLES}}))


def current_snapshot(db: SparkConnection, table: str) -> int | None:
    row = db.execute(f"SELECT snapshot_id FROM {db.qualified(table)}.refs "
                     "WHERE name = 'main'").fetchone()
    return row[0] if row else None


def publish(db: SparkConnection) -> int:
    """Name the current snapshot of each fold table in one commit; returns the fold number."""
    prepare_publish(db)
    snapshots = [current_snapshot(db, t) for t in FOLD_TABLES]
    latest = db.execute(f"SELECT fold, {', '.join(FOLD_TABLES)} FROM {FOLDS} "
                        "ORDER BY fold DESC LIMIT 1").fetchone()
    if latest and list(latest[1:]) == snapshots:
        return latest[0]  # nothing changed since
    fold = (latest[0] if latest else 0) + 1
    db.execute(f"INSERT INTO {FOLDS} VALUES ({', '.join('?' for _ in range(2 + len(snapshots)))})",
               [fold, int(time.time() * 1000), *snapshots])
    return fold


def pin(db: SparkConnection) -> int | None:
    """Make this session read the newest published fold: each fold table becomes a temporary
    view of that table as of the snapshot the fold names. Returns the fold (None: none yet,
    the tables are read as they are)."""
    prepare_publish(db)
    for table in (FOLDS, *FOLD_TABLES):  # this session's catalog may hold older metadata
        db.execute(f"REFRESH TABLE {db.qualified(table)}")
    latest = db.execute(f"SELECT fold, {', '.join(FOLD_TABLES)} FROM {db.qualified(FOLDS)} "
                        "ORDER BY fold DESC LIMIT 1").fetchone()
    if latest is None:
        return None
    for table, snapshot in zip(FOLD_TABLES, latest[1:]):
        source = (f"SELECT * FROM {db.qualified(table)} VERSION AS OF {int(snapshot)}"
                  if snapshot is not None else f"SELECT * FROM {db.qualified(table)} WHERE false")
        db.execute(f"CREATE OR REPLACE TEMPORARY VIEW {table} AS {source}")
    return latest[0]

# ---------------------------------------------------------------- SQL the sidecar did not write

# Functions that reach outside the tables: Java methods (the environment, files, the network),
# the user the driver runs as, and the files rows came from.
DENIED_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect", "current_user", "user",
                              "session_user", "input_file_name", "input_file_block_start",
                              "input_file_block_length"})
# Table-valued functions that make rows out of their arguments (no others: no `read_files`).
ROW_FUNCTIONS = frozenset({"range", "explode", "explode_outer", "inline", "inline_outer",
                           "posexplode", "posexplode_outer", "stack", "json_tuple"})


def select_problem(db: SparkConnection, text: str) -> str | None:
    """Why Spark would read something other than the sidecar's tables running `text` (None
    when it would not), from Spark's own parse tree: a name of more than one part (a file
    `parquet.`/path``, another catalog or namespace, a metadata table), a table-valued
    function not in ROW_FUNCTIONS, a function in DENIED_FUNCTIONS, an IDENTIFIER() clause, or
    anything but a query. Single names resolve to a WITH name, a view of this session or a
    table of the sidecar's namespace: nothing else is there."""
    jvm = db.spark._jvm
    try:
        plan = db.spark._jsparkSession.sessionState().sqlParser().parsePlan(text)
    except Exception as exc:  # py4j's error carries Spark's ParseException
        return f"not valid Spark SQL: {_first_line(exc)}"
    command = jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command")
    if command.isInstance(plan):
        return "only a SELECT is accepted"
    subquery = jvm.java.lang.Class.forName(
        "org.apache.spark.sql.catalyst.expressions.SubqueryExpression")
    plans, seen = [plan], 0
    while plans:
        node = plans.pop()
        seen += 1
        if seen > 10_000:
            return "too large to be checked"
        kind = node.getClass().getSimpleName()
        if "Identifier" in kind:
            return "IDENTIFIER() is not accepted"
        if kind == "UnresolvedRelation":
            name = _strings(node.multipartIdentifier())
            if len(name) != 1:
                return (f"FROM {'.'.join(name)} is not one of the sidecar's tables "
                        f"({', '.join(sorted(SIDECAR_TABLES))})")
        elif kind == "UnresolvedTableValuedFunction":
            name = ".".join(_strings(node.name())).lower()
            if name not in ROW_FUNCTIONS:
                return f"table function {name} is not accepted"
        elif "Command" in kind or kind.startswith(("Insert", "Create", "Drop", "Alter")):
            return "only a SELECT is accepted"
        plans += _seq(node.children()) + _seq(node.innerChildren())
        expressions = _seq(node.expressions())
        while expressions:
            expr = expressions.pop()
            ekind = expr.getClass().getSimpleName()
            if "Identifier" in ekind:
                return "IDENTIFIER() is not accepted"
            if ekind == "UnresolvedFunction":
                parts = _strings(expr.nameParts())
                if len(parts) != 1 or parts[0].lower() in DENIED_FUNCTIONS:
                    return f"function {'.'.join(parts)} is not accepted"
            if subquery.isInstance(expr):
                plans.append(expr.plan())
            expressions += _seq(expr.children())
    return None


def _seq(scala_seq) -> list:
    return [scala_seq.apply(i) for i in range(scala_seq.size())]


def _strings(scala_seq) -> list[str]:
    return [str(s) for s in _seq(scala_seq)]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("An error occurred", "Traceback")):
            return line.strip()[:300]
    return type(exc).__name__


def error_types() -> tuple[type, ...]:
    """The exceptions a statement on Spark raises for bad SQL or a failed job."""
    try:
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException
    except ImportError:
        return ()
    return (PySparkException, Py4JJavaError)


class SparkOptions:
    """What `--engine spark` runs on: the master (default local[2]) and Spark properties."""

    def __init__(self, master: str | None = None, conf: dict[str, str] | None = None) -> None:
        self.master, self.conf = master, dict(conf or {})

    def connect(self, settings) -> SparkConnection:
        return SparkConnection(settings, self.master, self.conf)
