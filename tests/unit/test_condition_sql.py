"""Segment conditions compiled to SQL (state/sql.py) select exactly the profiles for which the
Python evaluation holds, on the profile state that record_event builds from the same events.

Property-style: seeded random histories (equal times, late events, mixed value types, nulls,
quotes in strings, integers beyond 2**53) are folded into profiles in seq order and loaded into
DuckDB in the long format; every condition's SQL result must equal the Python result."""
from __future__ import annotations

import random

import pytest

duckdb = pytest.importorskip("duckdb")
pa = pytest.importorskip("pyarrow")

from state.conditions import (Check, Comparison, ConditionError, Count, EvalContext,  # noqa: E402
                              LastValue, evaluate, parse_condition, walk)
from state.durations import DAY, HOUR, MINUTE  # noqa: E402
from state.profile import new_profile, record_event  # noqa: E402
from state.profile import DAYS_KEPT, HOURS_KEPT  # noqa: E402
from state.sql import (EVENT_COLUMNS, Dialect, DuckDBDialect, compile_segment,  # noqa: E402
                       event_rows, last_applied_profiles, last_seen_profiles)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BIG = 2 ** 53  # the first integer beyond which doubles skip integers
SEEDS = (1, 2, 3)
N_PROFILES = 50

NAMES = ["view", "view", "view", "purchase", "purchase", "attribute", "attribute",
         "add_to_cart", "__metadata"]
FIELDS = ["pref_cd", "plan", "amount", "optin", "big"]
VALUES = [None, True, False, 0, 1, 2, 13, -3, 20, 2.5, 13.0, 0.5, -1.5, 7.25,
          "13", "free", "pro", "it's", "", "Tokyo", "tokyo", "a%b_c", "O'Brien", "\\n"]
BIG_VALUES = [BIG, BIG + 1, BIG + 2, float(BIG), -(2 ** 63), 2 ** 63 - 1, 1e300, None, "big"]

EVENTS_DDL = ("CREATE TABLE events (profile_id VARCHAR, event_id VARCHAR, seq BIGINT, "
              "name VARCHAR, time BIGINT, field VARCHAR, v_bool BOOLEAN, v_long BIGINT, "
              "v_double DOUBLE, v_string VARCHAR)")
ARROW_SCHEMA = pa.schema([("profile_id", pa.string()), ("event_id", pa.string()),
                          ("seq", pa.int64()), ("name", pa.string()), ("time", pa.int64()),
                          ("field", pa.string()), ("v_bool", pa.bool_()),
                          ("v_long", pa.int64()), ("v_double", pa.float64()),
                          ("v_string", pa.string())])

# Segment definitions in dependency order (a segment refers only to earlier ones).
SEGMENT_SOURCES = {
    "buyers": {"count.purchase": {"gte": 1}},
    "tokyo": {"attribute.pref_cd": {"in": [13, "13"]}},
    "tokyo_buyers": {"all": [{"segment": "tokyo"}, {"segment": "buyers"}]},
    "engaged": {"any": [{"count.view": {"within": "1d", "gte": 2}},
                        {"not": {"segment": "tokyo_buyers"}}]},
}
SEGMENTS = {sid: parse_condition(src) for sid, src in SEGMENT_SOURCES.items()}

CONDITIONS = [
    # attribute.<field> and last.<event>.<field>: every operator, every type family
    {"attribute.pref_cd": {"eq": 13}},
    {"attribute.pref_cd": {"eq": 13.0}},
    {"attribute.pref_cd": {"eq": "13"}},
    {"attribute.pref_cd": {"ne": 13}},
    {"attribute.pref_cd": {"ne": "free"}},
    {"attribute.pref_cd": {"in": [13, "free", True, 2.5]}},
    {"attribute.pref_cd": {"exists": True}},
    {"attribute.pref_cd": {"exists": False}},
    {"attribute.pref_cd": {"lt": 2}},
    {"attribute.pref_cd": {"lte": 2.5, "gt": -3}},
    {"attribute.pref_cd": {"gte": 0.75}},
    {"attribute.pref_cd": {"gt": "free"}},
    {"attribute.pref_cd": {"lte": "O'Brien"}},
    {"attribute.pref_cd": {"lt": 10 ** 30}},
    {"attribute.pref_cd": {"gt": -(10 ** 400)}},
    {"attribute.optin": {"eq": True}},
    {"attribute.optin": {"ne": False}},
    {"attribute.plan": {"contains": "o"}},
    {"attribute.plan": {"contains": "'"}},
    {"attribute.plan": {"contains": ""}},
    {"attribute.plan": {"contains": "%"}},
    {"attribute.plan": {"contains": 1}},
    {"attribute.plan": {"eq": "it's"}},
    {"attribute.plan": {"in": ["", "\\n", "Tokyo"]}},
    {"last.purchase.amount": {"gt": 1}},
    {"last.purchase.amount": {"lte": 0.5}},
    {"last.purchase.amount": {"eq": 2}},
    {"last.view.plan": {"ne": "pro"}},
    {"last.view.optin": {"exists": False}},
    {"last.__metadata.pref_cd": {"gte": 1}},
    {"last.add_to_cart.big": {"eq": BIG}},
    {"last.add_to_cart.big": {"eq": BIG + 1}},
    {"last.add_to_cart.big": {"lt": BIG + 1}},
    {"last.add_to_cart.big": {"gte": float(BIG)}},
    {"last.add_to_cart.big": {"gt": BIG + 0.5}},
    {"last.add_to_cart.big": {"lte": 2 ** 63}},
    {"last.add_to_cart.big": {"ne": BIG + 2}},
    # counts, with and without windows (hourly up to 7d, daily beyond)
    {"count.view": {"gte": 3}},
    {"count.*": {"gt": 8}},
    {"count.purchase": {"eq": 0}},
    {"count.add_to_cart": {"in": [1, 2]}},
    {"count.view": {"lt": 2.5}},
    {"count.purchase": {"ne": 1}},
    {"count.never": {"eq": 0}},
    {"count.view": {"exists": False}},
    {"count.view": {"within": "1h", "gte": 1}},
    {"count.view": {"within": "90m", "gte": 2}},
    {"count.*": {"within": "1d", "gte": 2}},
    {"count.purchase": {"within": "7d", "gte": 1}},
    {"count.view": {"within": "8d", "gte": 2}},
    {"count.*": {"within": "30d", "lt": 5}},
    {"count.view": {"within": "90d", "eq": 1}},
    {"count.attribute": {"within": "169h", "gt": 0}},
    # aggregates over numbers (long and double, never bool)
    {"sum.purchase.amount": {"gt": 10}},
    {"sum.view.pref_cd": {"lte": 13.5}},
    {"min.purchase.amount": {"lt": 0}},
    {"max.purchase.amount": {"eq": 13}},
    {"avg.purchase.amount": {"gte": 2.25}},
    {"avg.attribute.pref_cd": {"in": [2, 13, 0.5]}},
    {"sum.view.amount": {"exists": False}},
    {"max.add_to_cart.big": {"gte": BIG + 1}},
    {"min.add_to_cart.big": {"lt": -(2 ** 62)}},
    # first/last seen and since
    {"first_seen": {"lt": NOW - 60 * DAY}},
    {"last_seen": {"gte": NOW - 10 * DAY}},
    {"first_seen": {"exists": True}},
    {"since.view": {"lt": "2d"}},
    {"since.purchase": {"gte": "1h"}},
    {"since.first_seen": {"gt": "30d"}},
    {"since.last_seen": {"eq": 0}},
    {"since.attribute": {"exists": False}},
    {"since.add_to_cart": {"in": ["0ms", "1h", "2h"]}},
    # combinations and segments
    {"all": [{"count.view": {"gte": 1}}, {"attribute.pref_cd": {"exists": True}}]},
    {"any": [{"since.purchase": {"lt": "3d"}}, {"attribute.plan": {"eq": "free"}}]},
    {"not": {"attribute.pref_cd": {"eq": 13}}},
    {"not": {"any": [{"count.view": {"within": "2h", "gte": 1}},
                     {"last.view.plan": {"exists": False}}]}},
    {"segment": "buyers"},
    {"segment": "tokyo_buyers"},
    {"all": [{"segment": "engaged"}, {"not": {"segment": "tokyo"}}]},
]


# ---------------------------------------------------------------- data


def _history(rng: random.Random, pid: str) -> list[dict]:
    n = rng.choice([0, 1, 2, 3, 5, 8, 12, 15, 20])
    anchor = NOW - rng.randrange(0, 100) * DAY + rng.randrange(0, 24) * HOUR
    times: list[int] = []
    for _ in range(n):
        r = rng.random()
        if times and r < 0.2:
            t = rng.choice(times)  # an equal time
        elif r < 0.6:  # on or next to hour boundaries, close to the anchor
            t = anchor - rng.randrange(0, 200) * HOUR + rng.choice([0, 0, -1, 1, 30 * MINUTE])
        else:
            t = anchor - rng.randrange(0, 95 * DAY)
        times.append(t)
    times.sort()
    for _ in range(n // 4):  # late events: some arrive after later ones
        i, j = rng.randrange(n), rng.randrange(n)
        times[i], times[j] = times[j], times[i]
    events = []
    for seq, t in enumerate(times):
        values = {}
        for f in rng.sample(FIELDS, rng.randrange(0, 4)):
            values[f] = rng.choice(BIG_VALUES if f == "big" else VALUES)
        events.append({"event_id": f"{pid}-{seq}", "name": rng.choice(NAMES), "time": t,
                       "request_id": rng.choice([None, "r1", "r2"]), "values": values})
    return events


class World:
    """Histories of N_PROFILES profiles, their Python state, and a DuckDB holding the events."""

    def __init__(self, seed: int):
        rng = random.Random(seed)
        self.histories = {f"p{i:02d}": _history(rng, f"p{i:02d}") for i in range(N_PROFILES)}
        self.profiles = {}
        rows = []
        for pid, events in self.histories.items():
            profile = new_profile(pid)
            for seq, event in enumerate(events):
                record_event(profile, event)
                rows += event_rows(pid, seq, event)
            self.profiles[pid] = profile
        self.con = duckdb.connect()
        self.con.execute(EVENTS_DDL)
        table = pa.Table.from_pylist([dict(zip(EVENT_COLUMNS, r)) for r in rows],
                                     schema=ARROW_SCHEMA)
        self.con.register("arrow_rows", table)
        self.con.execute("INSERT INTO events SELECT * FROM arrow_rows")
        self.con.unregister("arrow_rows")
        self.seen = [pid for pid, p in self.profiles.items() if p["last_seen"] is not None]

    def memberships(self, pid: str, now: int) -> frozenset[str]:
        """Segments judged as the stream does: in dependency order, at the same time."""
        members: set[str] = set()
        ctx = EvalContext(self.profiles[pid], None, now, members)
        for sid, cond in SEGMENTS.items():
            if evaluate(cond, ctx):
                members.add(sid)
        return frozenset(members)

    def python(self, cond, as_of: dict[str, int]) -> set[str]:
        return {pid for pid, now in as_of.items()
                if evaluate(cond, EvalContext(self.profiles[pid], None, now,
                                              self.memberships(pid, now)))}

    def sql(self, sql: str, params=None) -> set[str]:
        result = self.con.execute(sql, params).fetchall() if params else \
            self.con.execute(sql).fetchall()
        ids = [r[0] for r in result]
        assert len(ids) == len(set(ids)), "a profile appears more than once"
        return set(ids)


@pytest.fixture(scope="module")
def worlds():
    ws = [World(seed) for seed in SEEDS]
    yield ws
    for w in ws:
        w.con.close()


def test_histories_have_what_the_properties_need(worlds):
    events = [e for w in worlds for h in w.histories.values() for e in h]
    assert len(events) > 1000
    late = equal = 0
    for w in worlds:
        for h in w.histories.values():
            times = [e["time"] for e in h]
            late += sum(1 for i in range(1, len(times)) if times[i] < max(times[:i]))
            equal += len(times) - len(set(times))
    assert late > 50 and equal > 50
    assert len(CONDITIONS) >= 40


# ---------------------------------------------------------------- the property


@pytest.mark.parametrize("source", CONDITIONS, ids=[str(c)[:70] for c in CONDITIONS])
def test_sql_equals_python_at_last_seen(worlds, source):
    """as_of per profile = last_seen, from the profiles CTE; segments inlined."""
    cond = parse_condition(source)
    sql = compile_segment(cond, segments=SEGMENTS, profiles_sql=last_seen_profiles())
    for w in worlds:
        as_of = {pid: w.profiles[pid]["last_seen"] for pid in w.seen}
        assert w.sql(sql) == w.python(cond, as_of), sql


def _windows(cond) -> list[Count]:
    """The windowed counts a condition reads, through the segments it refers to."""
    found = []
    for _, node in walk(cond):
        if isinstance(node, Comparison) and isinstance(node.ref, Count) and node.ref.within:
            found.append(node.ref)
        elif hasattr(node, "segment"):
            found += _windows(SEGMENTS[node.segment])
    return found


def test_sql_equals_python_at_the_last_applied_event(worlds):
    """The stream last judged a profile at the time of its last applied event (earlier than
    last_seen when that event was late). Everything agrees there, except windows reaching below
    the profile's pruning horizon (see state/sql.py), which these are restricted away from."""
    excluded = 0
    for w in worlds:
        as_of = {pid: w.histories[pid][-1]["time"] for pid in w.seen}
        assert any(as_of[pid] < w.profiles[pid]["last_seen"] for pid in w.seen)
        for source in CONDITIONS:
            cond = parse_condition(source)
            sql = compile_segment(cond, segments=SEGMENTS, profiles_sql=last_applied_profiles())
            reachable = set()
            for pid, now in as_of.items():
                last_seen = w.profiles[pid]["last_seen"]
                if all((now - c.within) // c.bucket_size >= last_seen // c.bucket_size -
                       (HOURS_KEPT if c.bucket_size == HOUR else DAYS_KEPT)
                       for c in _windows(cond)):
                    reachable.add(pid)
            excluded += len(as_of) - len(reachable)
            assert w.sql(sql) & reachable == w.python(cond, as_of) & reachable, (source, sql)
    assert excluded  # the horizon case does occur in these histories


def test_conditions_discriminate(worlds):
    """Most conditions hold for some profiles and not for others (the property is not vacuous)."""
    split = 0
    for source in CONDITIONS:
        cond = parse_condition(source)
        sizes = [len(w.python(cond, {p: w.profiles[p]["last_seen"] for p in w.seen}))
                 for w in worlds]
        if any(0 < s < len(w.seen) for s, w in zip(sizes, worlds)):
            split += 1
    assert split >= 0.85 * len(CONDITIONS)


def test_global_as_of_parameter_and_profiles_without_events(worlds):
    """One as_of for everyone (a query parameter), a profiles table that also lists profiles
    the events table does not know: they are judged on an empty profile."""
    for w in worlds:
        now = max(p["last_seen"] for p in w.profiles.values() if p["last_seen"]) + 90 * MINUTE
        w.con.execute("CREATE OR REPLACE TABLE everyone (profile_id VARCHAR)")
        w.con.execute("INSERT INTO everyone SELECT unnest($ids)",
                      {"ids": list(w.profiles) + ["ghost"]})
        w.profiles.setdefault("ghost", new_profile("ghost"))
        try:
            for source in CONDITIONS:
                cond = parse_condition(source)
                sql = compile_segment(cond, segments=SEGMENTS, profiles="everyone",
                                      as_of="$as_of")
                expected = w.python(cond, {pid: now for pid in w.profiles})
                assert w.sql(sql, {"as_of": now}) == expected, (source, sql)
        finally:
            del w.profiles["ghost"]


def test_per_profile_as_of_column_after_last_seen(worlds):
    """as_of given as a column of the caller's profiles table, `p.as_of`, later than last_seen
    by different amounts (windows then move past the latest events)."""
    rng = random.Random(7)
    for w in worlds:
        as_of = {pid: w.profiles[pid]["last_seen"] + rng.choice([0, 1, 59 * MINUTE, HOUR,
                                                                  DAY, 8 * DAY])
                 for pid in w.seen}
        w.con.execute("CREATE OR REPLACE TABLE judged (profile_id VARCHAR, as_of BIGINT)")
        w.con.executemany("INSERT INTO judged VALUES (?, ?)", list(as_of.items()))
        for source in CONDITIONS:
            cond = parse_condition(source)
            sql = compile_segment(cond, segments=SEGMENTS, profiles="judged", as_of="p.as_of")
            assert w.sql(sql) == w.python(cond, as_of), (source, sql)


def test_memberships_table_instead_of_inlining(worlds):
    """segment: refs read from a (profile_id, segment) table the stream's memberships fill."""
    conditions = [c for c in CONDITIONS if "segment" in str(c)]
    assert len(conditions) >= 3
    for w in worlds:
        as_of = {pid: w.profiles[pid]["last_seen"] for pid in w.seen}
        w.con.execute("CREATE OR REPLACE TABLE memberships (profile_id VARCHAR, segment VARCHAR)")
        rows = [(pid, sid) for pid, now in as_of.items() for sid in w.memberships(pid, now)]
        w.con.executemany("INSERT INTO memberships VALUES (?, ?)", rows)
        for source in conditions:
            cond = parse_condition(source)
            sql = compile_segment(cond, memberships="memberships",
                                  profiles_sql=last_seen_profiles())
            assert "pref_cd" not in sql  # nothing inlined
            assert w.sql(sql) == w.python(cond, as_of), (source, sql)


# ---------------------------------------------------------------- focused cases


def _one_profile(events: list[dict]):
    con = duckdb.connect()
    con.execute(EVENTS_DDL)
    profile = new_profile("u")
    for seq, e in enumerate(events):
        e = {"event_id": f"e{seq}", "request_id": None, **e}
        record_event(profile, e)
        for row in event_rows("u", seq, e):
            con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    return con, profile


def _agree(con, profile, source) -> bool:
    cond = parse_condition(source)
    got = con.execute(compile_segment(cond, profiles_sql=last_seen_profiles())).fetchall()
    expected = evaluate(cond, EvalContext(profile, None, profile["last_seen"], frozenset()))
    assert (got == [("u",)]) == expected, source
    return expected


def test_late_event_does_not_overwrite_and_fields_merge():
    """A late event (older time than one applied before) leaves the latest values alone, even
    for a field the newer event lacks; fields of winning events accumulate; on equal times
    the one applied later wins."""
    con, profile = _one_profile([
        {"name": "attribute", "time": NOW, "values": {"plan": "a", "pref_cd": 1}},
        {"name": "attribute", "time": NOW + 20, "values": {"pref_cd": 2}},
        {"name": "attribute", "time": NOW + 10, "values": {"plan": "late", "pref_cd": 3}},
        {"name": "attribute", "time": NOW + 20, "values": {"optin": True}},
        {"name": "attribute", "time": NOW + 20, "values": {"optin": None}},
    ])
    assert _agree(con, profile, {"attribute.plan": {"eq": "a"}})
    assert _agree(con, profile, {"attribute.pref_cd": {"eq": 2}})
    assert _agree(con, profile, {"attribute.optin": {"exists": False}})
    assert not _agree(con, profile, {"attribute.plan": {"eq": "late"}})
    assert _agree(con, profile, {"sum.attribute.pref_cd": {"eq": 6}})
    assert _agree(con, profile, {"since.attribute": {"eq": 0}})


def test_integers_beyond_doubles_compare_exactly():
    con, profile = _one_profile([
        {"name": "x", "time": NOW, "values": {"n": BIG + 1, "d": float(BIG)}}])
    assert not _agree(con, profile, {"last.x.n": {"eq": float(BIG)}})
    assert _agree(con, profile, {"last.x.n": {"gt": float(BIG)}})
    assert not _agree(con, profile, {"last.x.d": {"eq": BIG + 1}})
    assert _agree(con, profile, {"last.x.d": {"lt": BIG + 1}})
    assert _agree(con, profile, {"last.x.d": {"ne": BIG + 1}})
    assert _agree(con, profile, {"last.x.d": {"eq": BIG}})
    assert _agree(con, profile, {"last.x.n": {"lt": 10 ** 20}})
    assert _agree(con, profile, {"last.x.d": {"gt": -(10 ** 400)}})


def test_window_bucket_edges():
    """The oldest bucket that overlaps the window counts whole (hourly up to 7d, daily beyond)."""
    t = NOW + 5 * HOUR + 17 * MINUTE
    con, profile = _one_profile([
        {"name": "v", "time": NOW + 3 * HOUR, "values": {}},  # bucket of t - 137m
        {"name": "v", "time": NOW + 3 * HOUR - 1, "values": {}},  # the hour before
        {"name": "v", "time": NOW - 5 * DAY, "values": {}},
        {"name": "v", "time": NOW - 8 * DAY + HOUR, "values": {}},  # older than t - 8d, same day
        {"name": "v", "time": t, "values": {}},
    ])
    for within, n in [("1ms", 1), ("2h", 2), ("137m", 2), ("138m", 3), ("3h", 3), ("5d", 3),
                      ("6d", 4), ("7d", 4), ("8d", 5), ("90d", 5)]:
        assert _agree(con, profile, {"count.v": {"within": within, "eq": n}}), within
        assert not _agree(con, profile, {"count.v": {"within": within, "ne": n}}), within


def test_strings_with_quotes_and_nul_are_literals():
    con, profile = _one_profile([
        {"name": "attribute", "time": NOW, "values": {"s": "x'); DROP TABLE events; --"}}])
    assert _agree(con, profile, {"attribute.s": {"eq": "x'); DROP TABLE events; --"}})
    assert _agree(con, profile, {"attribute.s": {"contains": "'); DROP"}})
    assert not _agree(con, profile, {"attribute.s": {"eq": "a\x00b"}})
    assert con.execute("SELECT count(*) FROM events").fetchone() == (2,)
    assert DuckDBDialect().string("a'b") == "'a''b'"


def test_empty_history_judged_on_an_empty_profile():
    con = duckdb.connect()
    con.execute(EVENTS_DDL)
    con.execute("CREATE TABLE profiles AS SELECT 'nobody' AS profile_id, 5 AS as_of")
    for source, expected in [({"count.*": {"eq": 0}}, True), ({"first_seen": {"exists": False}},
                             True), ({"since.view": {"exists": True}}, False),
                             ({"count.view": {"within": "1h", "lt": 1}}, True),
                             ({"attribute.x": {"ne": 1}}, False),
                             ({"not": {"sum.v.x": {"gt": 0}}}, True)]:
        got = con.execute(compile_segment(parse_condition(source))).fetchall()
        assert (got == [("nobody",)]) is expected, source


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("source", [
    {"event.name": {"eq": "view"}},
    {"event.price": {"gt": 1}},
    {"event.time": {"gt": 1}},
    {"event.id": {"eq": "x"}},
    {"request.path": {"eq": "/search"}},
    {"all": [{"count.view": {"gte": 1}}, {"not": {"request.path": {"exists": True}}}]},
])
def test_current_event_references_are_refused(source):
    with pytest.raises(ConditionError) as err:
        compile_segment(parse_condition(source))
    assert "current event" in str(err.value)


def test_error_paths_name_the_node():
    cond = parse_condition({"any": [{"count.v": {"gte": 1}}, {"event.name": {"eq": "v"}}]})
    with pytest.raises(ConditionError) as err:
        compile_segment(cond)
    assert err.value.path == "condition.any[1]"
    bad = {"s": parse_condition({"all": [{"event.x": {"eq": 1}}]})}
    with pytest.raises(ConditionError) as err:
        compile_segment(parse_condition({"segment": "s"}), segments=bad)
    assert err.value.path == "segments.s.condition.all[0]"


def test_segments_unknown_or_in_a_cycle_are_refused():
    with pytest.raises(ConditionError, match="neither"):
        compile_segment(parse_condition({"segment": "nowhere"}))
    with pytest.raises(ConditionError, match="neither"):
        compile_segment(parse_condition({"segment": "nowhere"}), segments=SEGMENTS)
    cyclic = {"a": parse_condition({"segment": "b"}),
              "b": parse_condition({"not": {"segment": "a"}})}
    with pytest.raises(ConditionError, match="cycle: a -> b -> a"):
        compile_segment(parse_condition({"segment": "a"}), segments=cyclic)


def test_names_are_checked_even_on_hand_built_trees():
    """The parser only lets [A-Za-z0-9_:-] names through; a tree built by hand is checked
    again, so no name can carry SQL."""
    for ref in [LastValue("x", "attribute", "a'b"), LastValue("x", "ev\"nt", "f")]:
        cond = Comparison(ref, (Check("eq", 1),))
        with pytest.raises(ConditionError, match="not a valid name"):
            compile_segment(cond)


@pytest.mark.parametrize("kwargs", [
    {"events_table": "events; DROP TABLE events"},
    {"events_table": "ev ents"},
    {"events_table": 'ev"ents'},
    {"events_table": ""},
    {"events_table": "a.b.c.d"},
    {"profiles": "profiles p, events"},
    {"memberships": "m--"},
    {"as_of": "1; DROP TABLE events"},
    {"as_of": "now()"},
    {"as_of": "as_of + 1"},
    {"as_of": 2 ** 70},
    {"as_of": 1.5},
    {"dialect": "oracle"},
    {"profiles_sql": "   "},
])
def test_bad_identifiers_and_options_are_refused(kwargs):
    cond = parse_condition({"segment": "s"}) if "memberships" in kwargs else \
        parse_condition({"count.view": {"gte": 1}})
    with pytest.raises(ValueError):
        compile_segment(cond, **kwargs)


def test_good_options_compile_and_run():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA arch")
    con.execute(EVENTS_DDL.replace("TABLE events", "TABLE arch.events"))
    con.execute("CREATE TABLE profiles AS SELECT 'u' AS profile_id, 1 AS as_of")
    cond = parse_condition({"count.view": {"within": "1h", "exists": True}})
    for as_of in [NOW, "-5", "as_of", "p.as_of", "$t"]:
        sql = compile_segment(cond, events_table="arch.events", as_of=as_of)
        params = {"t": NOW} if as_of == "$t" else None
        assert (con.execute(sql, params) if params else con.execute(sql)).fetchall() == [("u",)]
    sql = compile_segment(cond, events_table="arch.events", as_of="?", dialect=DuckDBDialect())
    assert con.execute(sql, [NOW]).fetchall() == [("u",)]


def test_dialect_floor_division_matches_python():
    d = DuckDBDialect()
    con = duckdb.connect()
    for a in [-7, -6, -1, 0, 1, 6, 7, NOW, -NOW]:
        for b in [2, HOUR, DAY]:
            assert con.execute(f"SELECT {d.floor_div(d.integer(a), b)}").fetchone()[0] == a // b
    # The base dialect writes standard SQL, for engines such as Trino.
    assert Dialect().int_div("a", "b") == "((a) / (b))"
    assert "strpos" in Dialect().contains("s", "'x'")
