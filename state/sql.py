"""The condition language compiled to SQL, so that the analytical sidecar can recompute segment
membership from the archived history of events and check it against the stream.

`compile_segment(cond)` returns one query whose single column `profile_id` is the set of
profiles for which `cond` holds, with exactly the semantics of `state.conditions.evaluate` on
the profile state that `state.profile.record_event` builds from the same events, applied in
`seq` order, judged at `as_of`.

The events table (long format, one row per (event, field), see `event_rows`):

    profile_id VARCHAR   the profile the event was applied to
    event_id   VARCHAR
    seq        BIGINT    order in which the profile's events were applied (unique per profile)
    name       VARCHAR   event name
    time       BIGINT    event time, ms since the epoch
    field      VARCHAR   NULL on the event's own row (every event has exactly one), else a field
    v_bool BOOLEAN, v_long BIGINT, v_double DOUBLE, v_string VARCHAR
                         the field's value: exactly one is non-NULL, or all are NULL when the
                         value is null; all NULL on the event's own row

Every event that `record_event` folded into the profile is in the table (and nothing else).

The profiles relation: the query reads `<profiles> p` with columns `profile_id` (unique) and
whatever `as_of` refers to. `<profiles>` is a table or view (`profiles="profiles"`), or a CTE
named `profiles` made from `profiles_sql` (a SELECT the caller trusts, e.g.
`last_seen_profiles()`). The result is a subset of its profile ids: a profile without events is
judged on an empty profile (counts 0, everything else missing).

`as_of` is "now" in ms, evaluated once per profile in `SELECT ... FROM <profiles> p`: a column
(`"as_of"`, the default, or `"p.as_of"`), a query parameter (`"?"`, `"$as_of"`, `":as_of"`) or an
integer literal. It must not be NULL. The stream judges a profile at the time of the event it
is applying, so its stored memberships are judged at the time of the last applied event:
`last_applied_profiles()`; `last_seen_profiles()` uses the latest event time (`last_seen`),
which differs when the last applied event was late.

`segment: <id>` is compiled by inlining `segments[id]` (a mapping of segment id to parsed
condition, e.g. `{s.id: s.condition for s in defs.segments}`), which is exact because the
stream judges segments in dependency order at the same `now`; ids not in the mapping are read
from `memberships` (a table of `(profile_id, segment)` rows that must hold the memberships
judged at the same `as_of`); an id in neither is a ConditionError, as is a cycle.

References to the current event (`event.*`, `request.*`) are a ConditionError: a segment is
judged on the profile alone.

Known limits of the equivalence, all outside what the stream produces or the tests cover:
- sums and averages of doubles are added in the engine's order, not `seq` order; with values
  whose partial sums are not exact (e.g. 0.1), the last bits may differ.
- NaN never enters (events with NaN are rejected); infinities do, and inf + -inf in a sum is
  NaN, which SQL engines order differently from Python.
- windowed counts mirror the Python buckets exactly when the window does not reach below the
  profile's pruning horizon: (as_of - within) // size >= last_seen // size - kept (kept = 168
  hourly buckets, 90 daily ones), which always holds when as_of >= last_seen. The profile
  prunes buckets relative to `last_seen`, so a window judged at the time of a late event may
  reach buckets the stream has dropped (even the late event's own) while the events table
  still has those events: there the SQL counts more than the stream.
- profiles merged by `identify` (fold_visitor) are folded state into state, which is not
  always the same as replaying the union of both histories in any single `seq` order.

Dialect differences (integer division, substring test, string escapes) live in `Dialect`;
`DuckDBDialect` is the default and `SparkDialect` (Spark SQL over Iceberg, the sidecar's
`--engine spark`) overrides the same few methods; the results are the same on both
(tests/spark).
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field as dc_field
from typing import Mapping

from state.conditions import (EVENT_REFERENCES, NAME, Aggregate, AllOf, AnyOf, Comparison,
                              Condition, ConditionError, Count, InSegment, LastValue, Not,
                              Seen, Since)

# Relation names: identifiers, optionally qualified (catalog.schema.table).
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RELATION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")
# What `as_of` may be: a column, a parameter or an integer literal.
_AS_OF = re.compile(r"\?|[$:][A-Za-z_][A-Za-z0-9_]*|-?[0-9]+|"
                    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
EVENT_COLUMNS = ("profile_id", "event_id", "seq", "name", "time", "field",
                 "v_bool", "v_long", "v_double", "v_string")

# ---------------------------------------------------------------- dialects


class Dialect:
    """How one SQL engine writes the few things that differ between engines. The base class
    writes standard SQL; subclasses override what their engine does differently."""

    name = "standard"

    def identifier(self, name: str) -> str:
        """A quoted identifier (already validated: letters, digits, _)."""
        if not _IDENT.fullmatch(name):
            raise ValueError(f"not an identifier: {name!r}")
        return f'"{name}"'

    def relation(self, name: str) -> str:
        """A possibly qualified table name, each part quoted."""
        if not isinstance(name, str) or not _RELATION.fullmatch(name):
            raise ValueError(f"not a table name (identifiers separated by dots): {name!r}")
        return ".".join(self.identifier(part) for part in name.split("."))

    def string(self, value: str) -> str:
        """A string literal: quotes doubled, NUL characters (which SQL text cannot carry)
        concatenated in as chr(0)."""
        parts = ["'" + part.replace("'", "''") + "'" for part in value.split("\x00")]
        return "(" + " || chr(0) || ".join(parts) + ")" if len(parts) > 1 else parts[0]

    def integer(self, value: int) -> str:
        if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"not a 64-bit integer: {value!r}")
        return f"CAST({value} AS BIGINT)" if value < 0 or value > 2 ** 31 - 1 else str(value)

    def double(self, value: float) -> str:
        """An exact double literal (repr round-trips; the engine parses the text as a double)."""
        if math.isnan(value):
            raise ValueError("NaN is not a comparable value")
        text = "Infinity" if value == math.inf else "-Infinity" if value == -math.inf \
            else repr(float(value))
        return f"CAST('{text}' AS DOUBLE)"

    def boolean(self, value: bool) -> str:
        return "TRUE" if value else "FALSE"

    def int_div(self, a: str, b: str) -> str:
        """Integer division truncating toward zero, on BIGINT operands."""
        return f"(({a}) / ({b}))"  # standard SQL, Trino

    def floor_div(self, a: str, b: int) -> str:
        """Python's a // b for a positive constant b, built on truncating division and %."""
        size = self.integer(b)
        return self.int_div(f"({a}) - ((({a}) % {size}) + {size}) % {size}", size)

    def contains(self, haystack: str, needle: str) -> str:
        """True when `needle` occurs in `haystack` (an empty needle occurs everywhere)."""
        return f"(strpos({haystack}, {needle}) > 0)"


class DuckDBDialect(Dialect):
    name = "duckdb"

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) // ({b}))"  # `/` is float division in DuckDB

    def contains(self, haystack: str, needle: str) -> str:
        return f"contains({haystack}, {needle})"


class SparkDialect(Dialect):
    """Spark SQL 4.1, in the session the sidecar opens (sidecar/spark.py): ANSI mode, and
    `spark.sql.ansi.doubleQuotedIdentifiers` on, so "first" is a column as in DuckDB."""

    name = "spark"

    def string(self, value: str) -> str:
        # Spark reads backslash escapes in a literal ('\n' is a newline): a backslash is doubled.
        return super().string(value.replace("\\", "\\\\"))

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) DIV ({b}))"  # `/` is float division in Spark; DIV truncates

    def contains(self, haystack: str, needle: str) -> str:
        return f"contains({haystack}, {needle})"


DIALECTS: dict[str, Dialect] = {"duckdb": DuckDBDialect(), "spark": SparkDialect()}


def _dialect(dialect: str | Dialect) -> Dialect:
    if isinstance(dialect, Dialect):
        return dialect
    try:
        return DIALECTS[dialect]
    except (KeyError, TypeError):
        raise ValueError(f"unknown SQL dialect {dialect!r} (known: {', '.join(DIALECTS)})") \
            from None

# ---------------------------------------------------------------- public API


def compile_segment(cond: Condition, *, events_table: str = "events", as_of: str | int = "as_of",
                    dialect: str | Dialect = "duckdb",
                    segments: Mapping[str, Condition] | None = None,
                    memberships: str | None = None, profiles: str = "profiles",
                    profiles_sql: str | None = None) -> str:
    """SQL returning one column `profile_id`: the profiles (of `profiles`) for which `cond`
    holds at `as_of`, computed from `events_table`. See the module docstring for the tables."""
    d = _dialect(dialect)
    if type(as_of) is int:
        as_of = d.integer(as_of)
    elif not isinstance(as_of, str) or not _AS_OF.fullmatch(as_of):
        raise ValueError(f"as_of must be a column, a parameter (?, $name, :name) or an integer "
                         f"literal, got {as_of!r}")
    if profiles_sql is not None:
        if not isinstance(profiles_sql, str) or not profiles_sql.strip():
            raise ValueError("profiles_sql must be the text of a SELECT")
        profiles = "profiles"
    c = _Compiler(d, segments or {}, d.relation(memberships) if memberships else None)
    predicate = c.condition(cond, "condition", ())
    return c.query(predicate, d.relation(events_table), d.relation(profiles), as_of,
                   profiles_sql)


def last_seen_profiles(events_table: str = "events", dialect: str | Dialect = "duckdb") -> str:
    """A SELECT of (profile_id, as_of) with as_of = the profile's latest event time (last_seen),
    for `compile_segment(..., profiles_sql=last_seen_profiles())`."""
    d = _dialect(dialect)
    return (f"SELECT profile_id, max({d.identifier('time')}) AS as_of "
            f"FROM {d.relation(events_table)} WHERE field IS NULL GROUP BY profile_id")


def last_applied_profiles(events_table: str = "events", dialect: str | Dialect = "duckdb") -> str:
    """A SELECT of (profile_id, as_of) with as_of = the time of the profile's last applied event
    (highest seq): the `now` at which the stream last judged the profile's segments."""
    d = _dialect(dialect)
    return (f"SELECT profile_id, {d.identifier('time')} AS as_of FROM (SELECT profile_id, "
            f"{d.identifier('time')}, row_number() OVER (PARTITION BY profile_id ORDER BY seq "
            f"DESC) AS rn FROM {d.relation(events_table)} WHERE field IS NULL) x WHERE rn = 1")


def event_rows(profile_id: str, seq: int, event: dict) -> list[tuple]:
    """The events-table rows of one event, in EVENT_COLUMNS order: the event's own row
    (field NULL) and one row per value. bool is v_bool (before int: bool is an int in Python),
    int v_long, float v_double, str v_string, None no value at all."""
    base = (profile_id, event["event_id"], seq, event["name"], event["time"])
    rows = [base + (None, None, None, None, None)]
    for name, value in (event.get("values") or {}).items():
        t = type(value)
        if value is None:
            typed = (None, None, None, None)
        elif t is bool:
            typed = (value, None, None, None)
        elif t is int:
            typed = (None, value, None, None)
        elif t is float:
            typed = (None, None, value, None)
        elif t is str:
            typed = (None, None, None, value)
        else:
            raise ValueError(f"field {name!r}: {t.__name__} is not an event value")
        rows.append(base + (name,) + typed)
    return rows

# What SQL the sidecar did not write (batch audiences, `cjo sidecar query`) may read: the
# sidecar's own tables, the names its WITH clauses give, and table functions that make rows out
# of nothing. DuckDB reads files, URLs and other databases through table functions (read_csv,
# read_text, glob, query_table...) and through a file path in FROM ('/etc/passwd'): all refused.
SIDECAR_TABLES = frozenset({"journey_state", "snapshot_profiles", "events", "audience_members",
                            "partition_offsets", "archive_offsets", "loaded_files",
                            "audience_runs", "audience_pending", "audience_uncertain"})
ROW_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# A DuckDB connection that runs such SQL: no file, no URL, no extension (none installed or
# loaded on demand), and no statement can turn any of it back on. The sidecar's connection
# setup and this check both use it; the lock is the guarantee, the check the clear message.
LOCKED_DUCKDB = {"enable_external_access": False, "autoinstall_known_extensions": False,
                 "autoload_known_extensions": False, "allow_community_extensions": False,
                 "lock_configuration": True}
_PARSERS = threading.local()


def read_only_select_problem(text: str) -> str | None:
    """Why `text` is not one read-only SELECT of the sidecar's tables (None when it is), by
    DuckDB's own parser: a batch audience may only read, and only what the sidecar holds."""
    import duckdb  # the SQL engine's parser, not a hand-written one

    try:
        kinds = [s.type for s in _parser().extract_statements(text)]
    except (duckdb.Error, TypeError, UnicodeError) as exc:  # TypeError: text that is not UTF-8
        return f"not valid SQL: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
    except ValueError:  # a statement kind the Python API has no name for (UPDATE EXTENSIONS)
        return "only a SELECT is accepted"
    if len(kinds) != 1:
        return f"expected one statement, got {len(kinds)}"
    if kinds[0] != duckdb.StatementType.SELECT:
        return f"only a SELECT is accepted, got {kinds[0].name}"
    return _outside_reads(text)


def _parser():
    """This thread's locked in-memory DuckDB connection that parses (a new one takes ~30 ms)."""
    import duckdb

    if getattr(_PARSERS, "db", None) is None:
        _PARSERS.db = duckdb.connect(config=dict(LOCKED_DUCKDB))
    return _PARSERS.db


def _outside_reads(text: str) -> str | None:
    """The first table function or FROM name in the parsed SELECT (outermost first) that
    reads something other than the sidecar's tables."""
    import json
    from collections import deque

    import duckdb

    try:
        (tree,) = _parser().execute("SELECT json_serialize_sql(?)", [text]).fetchone()
        tree = json.loads(tree)
    except duckdb.Error as exc:
        return f"cannot be checked: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
    except RecursionError:
        return "nested too deeply to be checked"
    if tree.get("error"):
        return f"cannot be checked: {tree.get('error_message') or 'not a plain SELECT'}"
    nodes, refs, named = deque([tree]), [], set()
    while nodes:  # breadth first: the outermost reference is named first
        node = nodes.popleft()
        if isinstance(node, list):
            nodes.extend(node)
        elif isinstance(node, dict):
            if node.get("type") in ("TABLE_FUNCTION", "BASE_TABLE"):
                refs.append(node)
            if isinstance(node.get("cte_map"), dict):
                named.update(str(cte.get("key")).lower() for cte in node["cte_map"].get("map", ()))
            nodes.extend(node.values())
    for ref in refs:
        if ref["type"] == "TABLE_FUNCTION":
            name = str((ref.get("function") or {}).get("function_name", "?"))
            if name.lower() not in ROW_FUNCTIONS:
                return (f"{name}() reads outside the sidecar's tables (of the table "
                        f"functions, only {', '.join(sorted(ROW_FUNCTIONS))} may be used)")
            continue
        parts = [ref.get(k) or "" for k in ("catalog_name", "schema_name", "table_name")]
        name = ".".join(p for p in parts if p)
        if not all(_IDENT.fullmatch(p) for p in parts if p):
            return f"FROM {name!r} names a file or URL: only the sidecar's tables may be read"
        table = parts[2].lower()
        if parts[0] or parts[1].lower() not in ("", "main") or \
                (table not in SIDECAR_TABLES and table not in named):
            return (f"FROM {name} is not one of the sidecar's tables "
                    f"({', '.join(sorted(SIDECAR_TABLES))})")
    return None

# ---------------------------------------------------------------- compiler


@dataclass
class _Compiler:
    d: Dialect
    segments: Mapping[str, Condition]
    memberships: str | None
    # Per-profile statistics: key -> (column name, aggregate SQL over `e` joined to `_p`).
    stats: dict = dc_field(default_factory=dict)
    windows: dict = dc_field(default_factory=dict)  # (within, size) -> index
    lasts: dict = dc_field(default_factory=dict)  # (event, field) -> join alias
    all_events: bool = False  # some statistic reads every event row (count.*, seen)
    event_names: set = dc_field(default_factory=set)  # event rows of these names are read
    agg_fields: set = dc_field(default_factory=set)  # (event, field) rows are read

    # ---- conditions: each compiles to a SQL boolean that is never NULL

    def condition(self, cond, path: str, stack: tuple) -> str:
        if isinstance(cond, (AllOf, AnyOf)):
            key, joiner = ("all", " AND ") if isinstance(cond, AllOf) else ("any", " OR ")
            items = [self.condition(c, f"{path}.{key}[{i}]", stack)
                     for i, c in enumerate(cond.items)]
            return "(" + joiner.join(items) + ")"
        if isinstance(cond, Not):
            return f"(NOT {self.condition(cond.item, f'{path}.not', stack)})"
        if isinstance(cond, InSegment):
            return self.segment(cond.segment, path, stack)
        if isinstance(cond, Comparison):
            return self.comparison(cond, path)
        raise ConditionError(path, f"not a condition: {cond!r}")

    def segment(self, sid: str, path: str, stack: tuple) -> str:
        if sid in stack:
            cycle = " -> ".join(stack[stack.index(sid):] + (sid,))
            raise ConditionError(path, f"segments reference each other in a cycle: {cycle}")
        if sid in self.segments:
            return self.condition(self.segments[sid], f"segments.{sid}.condition",
                                  stack + (sid,))
        if self.memberships is not None:
            return (f"EXISTS (SELECT 1 FROM {self.memberships} m WHERE m.profile_id = "
                    f"_p.profile_id AND m.segment = {self.d.string(sid)})")
        raise ConditionError(path, f"segment {sid!r} is neither in the segments given to the "
                                   "compiler nor read from a memberships table")

    def comparison(self, cond: Comparison, path: str) -> str:
        ref = cond.ref
        if isinstance(ref, EVENT_REFERENCES):
            raise ConditionError(path, f"{ref.text!r} reads the current event; a segment is "
                                       "judged on the profile alone and cannot be computed "
                                       "from the history")
        for name in _names(ref):
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise ConditionError(path, f"{ref.text!r}: {name!r} is not a valid name")
        if isinstance(ref, LastValue):
            value = self.last_value(ref)
            parts = [self.any_check(value, c.op, c.value, path) for c in cond.checks]
        else:
            expr, typ = self.numeric(ref, path)
            parts = [self.number_check(expr, typ, c.op, c.value, path) for c in cond.checks]
        # Every part is already NULL-free; one check needs no parentheses of its own.
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    # ---- references

    def stat(self, key: tuple, column_sql: str) -> str:
        if key not in self.stats:
            self.stats[key] = (f"s{len(self.stats)}", column_sql)
        return f"_s.{self.stats[key][0]}"

    def numeric(self, ref, path: str) -> tuple[str, str]:
        """(SQL expression, "long" or "double") of a numeric reference; NULL when missing."""
        d = self.d
        ev = "e.profile_id IS NOT NULL AND e.field IS NULL"  # the event's own row
        t = f"e.{d.identifier('time')}"
        if isinstance(ref, Count):
            cond = ev
            if ref.event is None:
                self.all_events = True
            else:
                self.event_names.add(ref.event)
                cond += f" AND e.name = {d.string(ref.event)}"
            if ref.within is not None:
                w = self.windows.setdefault((ref.within, ref.bucket_size), len(self.windows))
                cond += f" AND {t} >= _p.lo{w} AND {t} < _p.hi{w}"
            return self.stat(("count", ref.event, ref.within),
                             f"count(CASE WHEN {cond} THEN 1 END)"), "long"
        if isinstance(ref, Seen) or (isinstance(ref, Since) and ref.event is None):
            self.all_events = True
            func = "min" if ref.key == "first_seen" else "max"
            then = self.stat((ref.key,), f"{func}(CASE WHEN {ev} THEN {t} END)")
            return (then, "long") if isinstance(ref, Seen) else (f"(_p.now_ms - {then})", "long")
        if isinstance(ref, Since):
            self.event_names.add(ref.event)
            then = self.stat(("last_time", ref.event),
                             f"max(CASE WHEN {ev} AND e.name = {d.string(ref.event)} "
                             f"THEN {t} END)")
            return f"(_p.now_ms - {then})", "long"
        if isinstance(ref, Aggregate):
            self.agg_fields.add((ref.event, ref.field))
            # Numbers only (bool is v_bool); longs as doubles, as record_event's float(value).
            num = (f"CASE WHEN e.name = {d.string(ref.event)} AND e.field = "
                   f"{d.string(ref.field)} THEN COALESCE(CAST(e.v_long AS DOUBLE), e.v_double) "
                   "END")
            if ref.func == "avg":
                sql = f"sum({num}) / CAST(NULLIF(count({num}), 0) AS DOUBLE)"
            else:
                sql = f"{ref.func}({num})"
            return self.stat((ref.func, ref.event, ref.field), sql), "double"
        raise ConditionError(path, f"cannot compile reference {ref!r}")

    def last_value(self, ref: LastValue) -> tuple[str, str, str, str]:
        key = (ref.event, ref.field)
        if key not in self.lasts:
            self.lasts[key] = f"l{len(self.lasts)}"
        a = self.lasts[key]
        return f"{a}.v_bool", f"{a}.v_long", f"{a}.v_double", f"{a}.v_string"

    # ---- operators; each returns a boolean that is never NULL

    def number_check(self, expr: str, typ: str, op: str, value, path: str) -> str:
        if op == "exists":
            return f"({expr} IS NOT NULL)" if value else f"({expr} IS NULL)"
        if op == "in":
            return _any([self.number_check(expr, typ, "eq", v, path) for v in value])
        if op == "contains":  # the parser refuses it on numbers; a number contains nothing
            return "FALSE"
        if type(value) not in (int, float):
            return "FALSE"  # not comparable (numbers compare only with numbers)
        return self.exact(expr, typ, op, value)

    def any_check(self, value: tuple, op: str, lit, path: str) -> str:
        b, l_, f, s = value
        d = self.d
        if op == "exists":
            present = f"({b} IS NOT NULL OR {l_} IS NOT NULL OR {f} IS NOT NULL OR {s} IS NOT NULL)"
            return present if lit else f"(NOT {present})"
        if op == "in":
            return _any([self.any_check(value, "eq", v, path) for v in lit])
        if op == "contains":
            if type(lit) is not str:  # only lists could hold it, and values are primitives
                return "FALSE"
            return f"COALESCE({d.contains(s, d.string(lit))}, FALSE)"
        t = type(lit)
        if t is bool:
            if op not in ("eq", "ne"):  # true is not ordered
                return "FALSE"
            return f"COALESCE({b} {_SQL_OPS[op]} {d.boolean(lit)}, FALSE)"
        if t is str:
            return f"COALESCE({s} {_SQL_OPS[op]} {d.string(lit)}, FALSE)"
        if t in (int, float):
            return _any([self.exact(l_, "long", op, lit), self.exact(f, "double", op, lit)])
        raise ConditionError(path, f"cannot compare with {lit!r}")

    def exact(self, expr: str, typ: str, op: str, lit) -> str:
        """expr <op> lit with Python's exact int/float comparison (no rounding of either side
        to the other's type), NULL-free: a NULL expr is false."""
        d = self.d
        present = f"({expr} IS NOT NULL)"
        if typ == "long" and type(lit) is float:
            if not math.isfinite(lit):
                raise ValueError(f"not a finite number: {lit!r}")
            if op in ("eq", "ne"):
                if lit.is_integer():
                    lit = int(lit)
                else:
                    return "FALSE" if op == "eq" else present
            else:  # an integer is < x iff it is < ceil(x), <= x iff <= floor(x), etc.
                lit = math.ceil(lit) if op in ("lt", "gte") else math.floor(lit)
        if typ == "long":
            if INT64_MIN <= lit <= INT64_MAX:
                return f"COALESCE({expr} {_SQL_OPS[op]} {d.integer(lit)}, FALSE)"
            # Beyond every BIGINT: the answer only depends on the side.
            holds = {"eq": False, "ne": True, "lt": lit > 0, "lte": lit > 0,
                     "gt": lit < 0, "gte": lit < 0}[op]
            return present if holds else "FALSE"
        # typ == "double"
        if type(lit) is int:
            try:
                near = float(lit)
            except OverflowError:
                near = math.inf if lit > 0 else -math.inf
            if near != lit:  # no double equals lit: compare with its neighbours
                if op == "eq":
                    return "FALSE"
                if op == "ne":
                    return present
                below, above = (math.nextafter(near, -math.inf), near) if near > lit \
                    else (near, math.nextafter(near, math.inf))
                if op in ("lt", "lte"):
                    return f"COALESCE({expr} <= {d.double(below)}, FALSE)"
                return f"COALESCE({expr} >= {d.double(above)}, FALSE)"
            lit = near
        return f"COALESCE({expr} {_SQL_OPS[op]} {d.double(lit)}, FALSE)"

    # ---- the query

    def query(self, predicate: str, events: str, profiles: str, as_of: str,
              profiles_sql: str | None) -> str:
        d = self.d
        t = d.identifier("time")
        ctes = []
        if profiles_sql is not None:
            ctes.append(f"profiles AS (\n  {profiles_sql.strip()}\n)")
        now = f"CAST(({as_of}) AS BIGINT)"
        if self.windows:
            ctes.append(f"_n AS (\n  SELECT p.profile_id, {now} AS now_ms FROM {profiles} p\n)")
            bounds = []
            # A bucket of index i counts when lo <= i <= hi, i.e. when the event time is in
            # [lo * size, (hi + 1) * size), lo = (now - within) // size, hi = now // size.
            for (within, size), w in self.windows.items():
                lo = d.floor_div(f"now_ms - {d.integer(within)}", size)
                hi = d.floor_div("now_ms", size)
                bounds.append(f"{lo} * {d.integer(size)} AS lo{w}")
                bounds.append(f"({hi} + 1) * {d.integer(size)} AS hi{w}")
            ctes.append("_p AS (\n  SELECT profile_id, now_ms,\n    "
                        + ",\n    ".join(bounds) + "\n  FROM _n\n)")
        else:
            ctes.append(f"_p AS (\n  SELECT p.profile_id, {now} AS now_ms FROM {profiles} p\n)")
        joins = []
        if self.stats:
            rows = []  # only the rows some statistic reads
            if self.all_events:
                rows.append("e.field IS NULL")
            elif self.event_names:
                rows.append(f"(e.field IS NULL AND e.name IN ({self._strings(self.event_names)}))")
            for ev, fld in sorted(self.agg_fields):
                rows.append(f"(e.name = {d.string(ev)} AND e.field = {d.string(fld)})")
            columns = ",\n    ".join(f"{sql} AS {col}" for col, sql in self.stats.values())
            ctes.append(
                f"_s AS (\n  SELECT _p.profile_id,\n    {columns}\n"
                f"  FROM _p LEFT JOIN {events} e\n    ON e.profile_id = _p.profile_id AND "
                f"({' OR '.join(rows)})\n  GROUP BY _p.profile_id\n)")
            joins.append("JOIN _s ON _s.profile_id = _p.profile_id")
        if self.lasts:
            names = self._strings({ev for ev, _ in self.lasts})
            fields = self._strings({fld for _, fld in self.lasts})
            # record_event overwrites the latest values with an event's values when its time
            # is >= the latest time of that name so far (in seq order): such an event "won".
            # A field's latest value comes from the last winning event (by seq) that has it.
            ctes.append(
                "_lr AS (\n  SELECT e.profile_id, e.name, e.field, e.seq, e.v_bool, e.v_long, "
                "e.v_double, e.v_string,\n"
                f"    CASE WHEN e.{t} >= max(e.{t}) OVER (PARTITION BY e.profile_id, e.name "
                "ORDER BY e.seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
                "THEN 1 ELSE 0 END AS won\n"
                f"  FROM {events} e\n  WHERE e.profile_id IN (SELECT profile_id FROM _p)\n"
                f"    AND e.name IN ({names}) AND (e.field IS NULL OR e.field IN ({fields}))\n)")
            ctes.append(
                "_lv AS (\n  SELECT profile_id, name, field, v_bool, v_long, v_double, "
                "v_string FROM (\n    SELECT profile_id, name, field, v_bool, v_long, "
                "v_double, v_string,\n      row_number() OVER (PARTITION BY profile_id, name, "
                "field ORDER BY seq DESC) AS rn\n    FROM _lr WHERE won = 1 AND field IS NOT "
                "NULL\n  ) x WHERE rn = 1\n)")
            for (ev, fld), a in self.lasts.items():
                joins.append(f"LEFT JOIN _lv {a} ON {a}.profile_id = _p.profile_id AND "
                             f"{a}.name = {d.string(ev)} AND {a}.field = {d.string(fld)}")
        body = "SELECT _p.profile_id\nFROM _p" + "".join(f"\n{j}" for j in joins)
        return "WITH " + ",\n".join(ctes) + f"\n{body}\nWHERE {predicate}"

    def _strings(self, values) -> str:
        return ", ".join(self.d.string(v) for v in sorted(values))


_SQL_OPS = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _any(parts: list[str]) -> str:
    parts = [p for p in parts if p != "FALSE"]
    if not parts:
        return "FALSE"
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _names(ref) -> list:
    """The event and field names a profile reference embeds in the query."""
    if isinstance(ref, LastValue) or isinstance(ref, Aggregate):
        return [ref.event, ref.field]
    if isinstance(ref, (Count, Since)):
        return [] if ref.event is None else [ref.event]
    return []
