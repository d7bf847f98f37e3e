"""Limits (README "Limits"): every dimension of an input and of a profile's state is bounded by
a stated rule. An input that breaks a limit on its own is refused with a reason code (a dead
letter); a profile whose accumulated state would grow past a limit records no more of it and
counts what it left out (`limited`). Never a crash, never a silent drop.

Also the rules for clock skew (events far in the future or the past), one profile's events
at a high rate, and giant profiles (100,000 events, thousands of attribute fields), whose
encoded record must stay under Kafka's record size limit."""
import copy
import random
import re
import time
from pathlib import Path

import pytest

from cjo.settings import Settings
from schemas import released_schemas
from schemas.codec import AvroCodec
from schemas.internal import LARGE, MAGIC, InternalCodec
from state.conditions import EvalContext, evaluate, parse_condition
from state.definitions import load_definitions
from state.durations import DAY, HOUR, MINUTE
from state.events import MAX_AHEAD, MAX_ID, MIN_TIME, REASON_CODES, check_event
from state.journey_machine import advance
from state.journeys import Journey, Stage, Step
from state.processing import step
from state.profile import (ALWAYS_RECORDED, DAYS_KEPT, HOURS_KEPT, LIMITED, LIMITS, Limits,
                           event_key, field_count, fold_visitor, new_profile, profile_text_bytes,
                           record_event)
from topology.machinery.wire import WorkerWire

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PROFILES = InternalCodec("profile", "t-profiles-changelog")  # as the worker writes them
AVRO_PROFILES = AvroCodec("profile", "t-profiles-changelog")  # records past LARGE
# Faust's producer sends at most 1,000,000 bytes per request (producer_max_request_size), the
# broker takes at most 1,048,588 per record batch: a profile's changelog record, and a
# visitor's profile inside a merge hand-over, must fit.
KAFKA_RECORD_LIMIT = 1_000_000


def ev(name="view", t=T0, values=None, request_id=None, event_id=None, visitor="v1",
       user=None) -> dict:
    return {"event_id": event_id or f"{name}@{t}", "name": name, "visitor_id": visitor,
            "user_id": user, "time": t, "request_id": request_id, "values": values or {}}


def recorded(*events, limits=LIMITS, pid="p1") -> dict:
    profile = new_profile(pid)
    for e in events:
        record_event(profile, e, limits)
    return profile


def holds(condition: dict, profile: dict, now: int, event=None) -> bool:
    return evaluate(parse_condition(condition),
                    EvalContext(profile=profile, event=event, now=now, segments=frozenset()))


# The worker's codecs (topology/machinery/wire.py), so that sizes are the real ones.
WIRE = WorkerWire(Settings().with_(app_id="t"))


def event_input(e: dict, partition: int, offset: int, pid: str | None = None,
                kind="event", **extra) -> dict:
    return {"kind": kind, "profile_id": pid or e["user_id"] or e["visitor_id"],
            "source_partition": partition, "source_offset": offset,
            "event": e, "visitor_id": None, "member_id": None,
            "merge_id": None, "state": None, **extra}


# ---------------------------------------------------------------- inputs: dead letters


def code(e: dict, timestamp: int = T0, key: bytes = b"v1", **kw) -> str | None:
    rejection = check_event(key, e, timestamp, **kw)
    assert rejection is None or (rejection.code in REASON_CODES and rejection.reason)
    return None if rejection is None else rejection.code


@pytest.mark.parametrize("field", ["event_id", "request_id"])
def test_an_id_longer_than_the_limit_is_id_too_long(field):
    assert code(ev(**{field: "i" * MAX_ID})) is None
    assert code(ev(**{field: "i" * (MAX_ID + 1)})) == "id_too_long"


def test_a_visitor_or_user_id_longer_than_the_limit_is_id_too_long():
    long_id = "u" * (MAX_ID + 1)
    assert code(ev(visitor=long_id), key=long_id.encode()) == "id_too_long"
    assert code(ev(visitor=None, user=long_id), key=long_id.encode()) == "id_too_long"
    assert code(ev(visitor=None, user="u" * MAX_ID), key=b"u" * MAX_ID) is None


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_value_that_is_not_a_finite_number_is_bad_value(value):
    assert code(ev(values={"price": value})) == "bad_value"


def test_every_reason_code_is_listed():
    assert len(set(REASON_CODES)) == len(REASON_CODES)
    source = (ROOT / "state" / "events.py").read_text()
    assert set(re.findall(r'Rejection\(\s*"([a-z_]+)"', source)) == set(REASON_CODES)


# ---------------------------------------------------------------- clock skew


def test_an_event_at_most_the_allowed_skew_after_its_record_is_accepted():
    assert MAX_AHEAD == LIMITS.max_clock_skew_ms == DAY
    assert code(ev(t=T0 + MAX_AHEAD)) is None
    assert code(ev(t=T0 + MAX_AHEAD + 1)) == "time_in_future"


def test_the_allowed_skew_is_a_parameter():
    assert code(ev(t=T0 + HOUR), max_ahead=HOUR) is None
    assert code(ev(t=T0 + HOUR + 1), max_ahead=HOUR) == "time_in_future"
    rejection = check_event(b"v1", ev(t=T0 + HOUR + 1), T0, max_ahead=HOUR)
    assert "clock skew" in rejection.reason


def test_events_far_in_the_past_are_accepted_back_to_the_year_2000():
    assert code(ev(t=MIN_TIME), timestamp=T0) is None
    assert code(ev(t=T0 - 20 * 365 * DAY), timestamp=T0) is None
    assert code(ev(t=MIN_TIME - 1), timestamp=T0) == "time_too_old"


def test_a_late_event_counts_but_windows_judge_it_by_its_own_time():
    """A late event (its time before the profile's latest) is counted, aggregated and moves
    first_seen; windows count it only inside their horizon (7 days hourly, 90 daily before
    the latest event); it never overwrites newer latest values."""
    p = recorded(ev("view", T0, {"page": "new", "n": 1}),
                 ev("view", T0 - 30 * DAY, {"page": "old", "n": 5}),
                 ev("view", T0 - 400 * DAY, {"page": "older", "n": 7}))
    assert p["counts"] == {"view": 3}
    assert (p["first_seen"], p["last_seen"]) == (T0 - 400 * DAY, T0)
    assert p["last"]["view"] == {"page": "new", "n": 1} and p["last_time"]["view"] == T0
    assert p["aggregates"]["view"]["n"] == {"sum": 13.0, "min": 1.0, "max": 7.0, "n": 3}
    assert list(p["hourly"]["view"]) == [str(T0 // HOUR)]
    assert sorted(p["daily"]["view"]) == sorted([str(T0 // DAY), str((T0 - 30 * DAY) // DAY)])
    assert holds({"count.view": {"eq": 3}}, p, T0)
    assert holds({"count.view": {"eq": 1, "within": "7d"}}, p, T0)
    assert holds({"count.view": {"eq": 2, "within": "60d"}}, p, T0)
    assert holds({"count.view": {"eq": 2, "within": "90d"}}, p, T0)
    # Judged at its own time, the late event's window reads what the profile still keeps:
    # hourly buckets 7 days back from the latest event, daily ones 90 days.
    assert holds({"count.view": {"eq": 0, "within": "1d"}}, p, T0 - 30 * DAY)
    assert holds({"count.view": {"eq": 1, "within": "8d"}}, p, T0 - 30 * DAY)
    assert holds({"count.view": {"eq": 0, "within": "8d"}}, p, T0 - 400 * DAY)
    assert holds({"since.view": {"lt": "0s"}}, p, T0 - 30 * DAY)  # its latest is later


def test_an_event_ahead_of_the_others_keeps_its_latest_values_until_time_passes_it():
    """Latest values go by event time: an event up to the allowed skew ahead wins over events
    that arrive after it with earlier times, until one is later than it."""
    p = recorded(ev("attribute", T0 + 20 * HOUR, {"plan": "skewed"}),
                 ev("attribute", T0 + HOUR, {"plan": "gold"}))
    assert p["last"]["attribute"] == {"plan": "skewed"}
    assert p["counts"]["attribute"] == 2 and p["last_seen"] == T0 + 20 * HOUR
    record_event(p, ev("attribute", T0 + 21 * HOUR, {"plan": "silver"}))
    assert p["last"]["attribute"] == {"plan": "silver"}


def test_a_journey_moved_by_an_event_from_the_future_does_not_go_back():
    """docs/journeys.md rule 1: a journey's time never goes back."""
    j = Journey("j", 1, parse_condition({"event.name": {"eq": "start"}}),
                (Stage("s", (Step("w", "wait", duration=DAY, next="e"), Step("e", "end"))),))
    p = new_profile("p1")
    for e in (ev("start", T0 + 20 * HOUR), ev("ping", T0)):
        record_event(p, e)
        advance(p, {"j": {1: j}}, {"j": j}, e, set(), e["time"], e["event_id"], e["event_id"])
    state = p["journeys"]["j"]
    assert state["entered_at"] == T0 + 20 * HOUR and state["due"] == T0 + 44 * HOUR


# ---------------------------------------------------------------- event names


def test_names_beyond_the_limit_are_not_recorded_and_counted():
    limits = Limits(max_event_names=2)
    p = recorded(ev("a", T0), ev("b", T0), ev("c", T0 + 1, {"x": 1}), ev("c", T0 + 2),
                 ev("a", T0 + 3), limits=limits)
    assert p["counts"] == {"a": 2, "b": 1}
    for key in ("hourly", "daily", "last_time", "last", "aggregates"):
        assert "c" not in p[key]
    assert p["last_seen"] == T0 + 3  # the profile did see the events
    assert p["limited"] == {"event_names": 2}


def test_attribute_identify_and_metadata_are_recorded_whatever_the_name_limit():
    limits = Limits(max_event_names=1)
    p = recorded(ev("a"), ev("b"), *(ev(n, values={"f": 1}) for n in sorted(ALWAYS_RECORDED)),
                 limits=limits)
    assert set(p["counts"]) == {"a"} | ALWAYS_RECORDED
    assert p["last"]["attribute"] == {"f": 1}
    assert p["limited"] == {"event_names": 1}


def test_an_unrecorded_name_is_still_judged_on_its_event():
    p = recorded(ev("a"), limits=Limits(max_event_names=1))
    extra = ev("b", values={"x": 1})
    record_event(p, extra, Limits(max_event_names=1))
    assert holds({"event.x": {"eq": 1}}, p, T0, event=extra)
    assert holds({"count.b": {"eq": 0}}, p, T0)


# ---------------------------------------------------------------- fields


def test_fields_beyond_the_limit_are_not_recorded_and_each_value_is_counted():
    limits = Limits(max_fields=3)
    p = recorded(ev("attribute", T0, {"a": 1, "b": "x"}),
                 ev("view", T0 + 1, {"z": 1, "y": 2, "path": "/"}),  # the first in order fits
                 ev("attribute", T0 + 2, {"a": 2, "c": 3}),  # a is known, c does not fit
                 limits=limits)
    assert p["last"] == {"attribute": {"a": 2, "b": "x"}, "view": {"path": "/"}}
    assert p["aggregates"] == {"attribute": {"a": {"sum": 3.0, "min": 1.0, "max": 2.0, "n": 2}}}
    assert field_count(p) == 3
    assert p["limited"] == {"fields": 3}
    assert p["counts"] == {"attribute": 2, "view": 1}  # the events themselves count


def test_which_new_fields_fit_does_not_depend_on_the_order_of_the_values():
    one = recorded(ev(values={"b": 1, "a": 1, "c": 1}), limits=Limits(max_fields=2))
    two = recorded(ev(values={"c": 1, "a": 1, "b": 1}), limits=Limits(max_fields=2))
    assert one["last"]["view"] == two["last"]["view"] == {"a": 1, "b": 1}


def test_a_late_events_new_fields_count_against_the_limit_too():
    limits = Limits(max_fields=1)
    p = recorded(ev("view", T0, {"a": 1}), ev("view", T0 - HOUR, {"b": 5}), limits=limits)
    assert p["aggregates"]["view"] == {"a": {"sum": 1.0, "min": 1.0, "max": 1.0, "n": 1}}
    assert p["limited"] == {"fields": 1}


# ---------------------------------------------------------------- text


def test_text_beyond_the_limit_is_not_kept_and_the_stale_value_goes_too():
    limits = Limits(max_text_bytes=10)
    p = recorded(ev("attribute", T0, {"a": "12345", "b": "123"}), limits=limits)
    assert profile_text_bytes(p) == 8
    record_event(p, ev("attribute", T0 + 1, {"b": "1234567", "n": 5}), limits)  # 12 > 10
    assert p["last"]["attribute"] == {"a": "12345", "n": 5}
    assert p["limited"] == {"text": 1}
    assert holds({"attribute.b": {"exists": False}}, p, T0 + 1)
    record_event(p, ev("attribute", T0 + 2, {"a": "1", "b": "123456789"}), limits)  # 10 fits
    assert p["last"]["attribute"] == {"a": "1", "b": "123456789", "n": 5}
    assert p["limited"] == {"text": 1}


def test_text_is_measured_in_utf8_bytes():
    limits = Limits(max_text_bytes=6)
    p = recorded(ev("attribute", values={"city": "東京"}), limits=limits)  # 6 bytes
    assert p["last"]["attribute"] == {"city": "東京"}
    record_event(p, ev("attribute", T0 + 1, {"ward": "x"}), limits)
    assert p["last"]["attribute"] == {"city": "東京"} and p["limited"] == {"text": 1}


def test_the_request_keeps_the_whole_metadata_event():
    p = recorded(ev("__metadata", values={"path": "/" * 50}, request_id="r1"),
                 limits=Limits(max_text_bytes=10))
    assert p["request"] == {"id": "r1", "values": {"path": "/" * 50}}
    assert p["last"]["__metadata"] == {}
    assert p["limited"] == {"text": 1}


# ---------------------------------------------------------------- merges of state


def test_folding_a_visitor_stays_within_the_limits_and_adds_its_counters():
    limits = Limits(max_event_names=2, max_fields=3, max_journeys=1)
    member = recorded(ev("a", T0, {"x": 1}), ev("b", T0, {"y": 1}), limits=limits, pid="m1")
    member["journeys"]["j1"] = {"kept": True}
    visitor = recorded(ev("c", T0 + 1), ev("c", T0 + 2), ev("a", T0 + 3, {"z": 1, "w": 2}),
                       limits=Limits(max_fields=3), pid="v1")
    visitor["journeys"] = {"j2": {"lost": True}}
    visitor["limited"] = {"fields": 4}
    fold_visitor(member, visitor, limits)
    assert member["counts"] == {"a": 2, "b": 1}
    assert member["last"]["a"] == {"x": 1, "w": 2}  # z does not fit (sorted: w first)
    assert member["journeys"] == {"j1": {"kept": True}}
    assert member["limited"] == {"event_names": 2, "fields": 4 + 1, "journeys": 1}
    assert member["last_seen"] == T0 + 3


# ---------------------------------------------------------------- journeys


START = parse_condition({"event.name": {"eq": "start"}})


def idle_journey(jid, version=1, reentry="none"):
    stage = Stage("s", (Step("w", "wait", duration=365 * DAY, next="e"), Step("e", "end")))
    return Journey(jid, version, START, (stage,), reentry=reentry,
                   exits=(parse_condition({"event.name": {"eq": f"leave_{jid}"}}),))


def send(profile, journeys, e, limits, versions=None):
    record_event(profile, e, limits)
    latest = {j.id: j for j in journeys}
    versions = versions or {j.id: {j.version: j} for j in journeys}
    return advance(profile, versions, latest, e, set(), e["time"], e["event_id"],
                   e["event_id"], limits=limits)


def test_entering_more_journeys_than_the_limit_is_refused_and_counted():
    limits = Limits(max_journeys=2)
    journeys = [idle_journey("a"), idle_journey("b"), idle_journey("c")]
    p = new_profile("p1")
    out = send(p, journeys, ev("start"), limits)
    assert sorted(p["journeys"]) == ["a", "b"]
    assert {o.record["journey"] for o in out} == {"a", "b"}
    assert p["limited"] == {"journeys": 1}
    # Leaving one does not free its record (its re-entry rule and funnel rows stay).
    send(p, journeys, ev("leave_a", T0 + 1), limits)
    send(p, journeys, ev("start", T0 + 2), limits)
    assert sorted(p["journeys"]) == ["a", "b"] and p["limited"] == {"journeys": 2}


def test_a_jump_to_a_journey_beyond_the_limit_leaves_and_is_counted():
    limits = Limits(max_journeys=1)
    jump = Journey("a", 1, START, (Stage("s", (Step("go", "jump", to_journey="b"),)),))
    other = Journey("b", 1, parse_condition({"event.name": {"eq": "b"}}),
                    idle_journey("b").stages)
    p = new_profile("p1")
    out = send(p, [jump, other], ev("start"), limits)
    assert list(p["journeys"]) == ["a"] and p["journeys"]["a"]["status"] == "left"
    assert [o.record["to"] for o in out][-1] == "jump:b"
    assert p["limited"] == {"journeys": 1}


def test_a_journey_record_keeps_the_newest_versions():
    limits = Limits(max_journey_versions=2)
    p = new_profile("p1")
    versions = {"a": {}}
    for v in (1, 2, 3):
        j = idle_journey("a", v, reentry="always")
        versions["a"][v] = j
        send(p, [j], ev("start", T0 + 10 * v), limits, versions)
        send(p, [j], ev("leave_a", T0 + 10 * v + 1), limits, versions)
    assert sorted(p["journeys"]["a"]["sparse"]) == ["2", "3"]
    assert p["limited"] == {"journey_versions": 1}


# ---------------------------------------------------------------- processing


DEFS = load_definitions((ROOT / "examples" / "definitions.yaml").read_text())
EVERY_VIEW = load_definitions({
    "segments": [{"id": "anyone", "condition": {"count.*": {"gte": 1}}}],
    "deliveries": [{"id": "ping", "segment": "anyone",
                    "trigger": {"event.name": {"eq": "view"}}}],  # no limits: every view
})


class Agent:
    def __init__(self, defs=DEFS, limits=LIMITS):
        self.defs, self.limits = defs, limits
        self.profile, self.offset = None, 0

    def feed(self, record, committed=None):
        self.profile, sends = step(self.profile, record, self.offset, committed, self.defs,
                                   WIRE, self.limits)
        self.offset += 1
        return sends


def merge_id(n: int) -> str:
    return f"v{n}>m1@1:{n}"


def identify(n: int, t=T0) -> dict:
    e = ev("identify", t, visitor=f"v{n}", user="m1", event_id=f"identify{n}")
    return event_input(e, 1, n, "m1", kind="identify", visitor_id=f"v{n}", merge_id=merge_id(n))


def merge_in(n: int, state=None) -> dict:
    return {"kind": "merge_in", "profile_id": "m1", "source_partition": 1, "source_offset": n,
            "event": None, "visitor_id": f"v{n}", "member_id": "m1", "merge_id": merge_id(n),
            "state": None if state is None else PROFILES.encode(state)}


def test_past_the_buffer_limit_merge_barriers_are_lifted_and_nothing_is_lost():
    agent = Agent(limits=Limits(max_buffered_bytes=2_000))
    agent.feed(identify(1))
    assert agent.profile["pending_merges"] == [merge_id(1)]
    n = 0
    while agent.profile["pending_merges"]:
        n += 1
        agent.feed(event_input(ev("view", T0 + n, user="m1", visitor=None,
                                  values={"pad": "x" * 100}), 0, n))
    assert agent.profile["buffered"] == []
    assert agent.profile["counts"] == {"identify": 1, "view": n}
    assert agent.profile["limited"] == {"merge_waits": 1}
    # The hand-over, when it comes, is folded in at once.
    visitor = recorded(ev("purchase", T0 - DAY, {"amount": 10}), pid="v1")
    agent.feed(merge_in(1, visitor))
    assert agent.profile["counts"] == {"identify": 1, "view": n, "purchase": 1}
    assert agent.profile["merges_done"] == [merge_id(1)]


def test_past_the_outbox_limit_the_oldest_entries_go_first():
    limit = 3_000
    agent = Agent(EVERY_VIEW, Limits(max_outbox_bytes=limit))
    sent = 0
    for n in range(200):  # a burst: no commit in between
        sent += len(agent.feed(event_input(ev("view", T0, user="m1", visitor=None,
                                              event_id=f"e{n}"), 0, n)))
    outbox = agent.profile["outbox"]
    assert sum(map(entry_bytes, outbox)) <= limit and outbox[-1]["offset"] == 199
    assert agent.profile["limited"] == {"outbox": 200 - len(outbox)}
    assert sent == 201  # every output was sent: one activation per view, one segment entry


def entry_bytes(entry: dict) -> int:
    """What an outbox entry counts against the limit: its source and its records' bytes."""
    return len(entry["source"]) + sum(len(r["topic"]) + len(r["key"]) + len(r["value"])
                                      for r in entry["records"])


def test_only_the_newest_merge_ids_are_remembered():
    agent = Agent(limits=Limits(max_merges_remembered=3))
    for n in range(1, 6):
        agent.feed(merge_in(n))
    assert agent.profile["merges_done"] == [merge_id(n) for n in (3, 4, 5)]
    assert agent.profile["limited"] == {"merges": 2}
    sends = agent.feed(merge_in(5))  # a duplicate within the remembered ones does nothing
    assert agent.profile["merges_done"][-1] == merge_id(5) and sends == []


def test_a_visitor_hands_its_counters_to_the_member():
    agent = Agent(limits=Limits(max_event_names=1))
    agent.feed(event_input(ev("a"), 0, 0))
    agent.feed(event_input(ev("b"), 0, 1))
    assert agent.profile["limited"] == {"event_names": 1}
    agent.feed({"kind": "merge_out", "profile_id": "v1", "source_partition": 0,
                "source_offset": 2, "event": None, "visitor_id": "v1", "member_id": "m1",
                "merge_id": "v1>m1@0:2", "state": None})
    assert agent.profile["limited"] == {}  # a pointer; the member adds them up


# ---------------------------------------------------------------- settings and schema


def test_the_limits_come_from_the_settings():
    assert Limits.from_settings(Settings()) == LIMITS
    s = Settings.from_env({"CJO_MAX_ATTRIBUTES_PER_PROFILE": "50",
                           "CJO_MAX_JOURNEYS_PER_PROFILE": "5",
                           "CJO_MAX_EVENT_NAMES_PER_PROFILE": "7",
                           "CJO_MAX_PROFILE_TEXT_BYTES": "999",
                           "CJO_MAX_CLOCK_SKEW": "3600"})
    assert Limits.from_settings(s) == Limits(max_fields=50, max_journeys=5, max_event_names=7,
                                             max_text_bytes=999, max_clock_skew_ms=HOUR)
    assert Settings.from_env(s.to_env()) == s
    with pytest.raises(ValueError, match="CJO_MAX_JOURNEYS_PER_PROFILE"):
        Settings.from_env({"CJO_MAX_JOURNEYS_PER_PROFILE": "0"})


def test_a_profile_written_before_the_limits_decodes_with_no_counters():
    old = released_schemas()["profile"][0]
    record = new_profile("p1")
    del record["limited"]
    data = AvroCodec("profile", "t", schema=old).encode(record)
    assert PROFILES.decode(data)["limited"] == {}
    # and an old reader reads a new Avro record (what the worker writes past LARGE)
    assert "limited" not in AvroCodec("profile", "t", schema=old).decode(
        AVRO_PROFILES.encode(recorded(ev(), limits=Limits(max_event_names=0))))


def test_every_counter_is_documented():
    readme = (ROOT / "README.md").read_text()
    for what in LIMITED:
        assert f"`{what}`" in readme, what


# ---------------------------------------------------------------- windows stay bounded, fast


def old_rule(profile: dict) -> None:
    """Pruning as it was specified first: after each event, every name with more than one
    bucket loses the buckets older than the horizon."""
    now = profile["last_seen"]
    for buckets, size, kept in ((profile["hourly"], HOUR, HOURS_KEPT),
                                (profile["daily"], DAY, DAYS_KEPT)):
        for per_name in buckets.values():
            if len(per_name) > 1:
                for index in [i for i in per_name if int(i) < now // size - kept]:
                    del per_name[index]


def test_pruning_per_hour_of_event_time_keeps_what_pruning_every_event_kept():
    for seed in range(100):
        rnd = random.Random(seed)
        p, t = new_profile("p1"), T0
        for _ in range(rnd.randint(1, 300)):
            jump = rnd.choice([0, MINUTE, HOUR, 5 * HOUR, DAY, 9 * DAY, 100 * DAY, -HOUR,
                               -3 * DAY, -50 * DAY, -500 * DAY])
            t_event = t + jump
            t = max(t, t_event)
            record_event(p, ev(rnd.choice("abcd"), t_event))
            expected = copy.deepcopy(p)
            old_rule(expected)
            assert p == expected, seed
        for per_name in p["hourly"].values():
            assert len(per_name) <= HOURS_KEPT + 1
        for per_name in p["daily"].values():
            assert len(per_name) <= DAYS_KEPT + 1


# ---------------------------------------------------------------- one profile at a high rate


BANNER_ON_EVERY_VIEW = load_definitions({"deliveries": [
    {"id": "every_view", "segment": "buyers", "trigger": {"event.name": {"eq": "view"}}}]},
    existing=DEFS)


def test_one_profile_at_a_high_rate_stays_bounded():
    """20,000 events of one profile within one second, with no commit in between (the
    outbox is never pruned by a commit) and a delivery without limits on every view: all
    are applied in order, every output is sent, and the record stays under its bound."""
    agent = Agent(BANNER_ON_EVERY_VIEW)
    sent = entries = 0
    started = time.perf_counter()
    for n in range(20_000):
        name = ("view", "add_to_cart", "purchase", "attribute")[n % 4]
        values = {"amount": n} if name == "purchase" else {"pref_cd": 13, "n": n} \
            if name == "attribute" else {"path": f"/p/{n}"}
        sends = agent.feed(event_input(ev(name, T0 + n // 20, values, event_id=f"e{n}",
                                          user="m1", visitor=None), 0, n))
        sent += sum(1 for r in sends if r["topic"] == "activations")
        entries += bool(sends)  # each input that sends something adds an outbox entry
    elapsed = time.perf_counter() - started
    p = agent.profile
    assert p["counts"] == {"view": 5000, "add_to_cart": 5000, "purchase": 5000,
                           "attribute": 5000}
    assert p["positions"] == {"0": 19_999}
    assert p["aggregates"]["purchase"]["amount"]["n"] == 5000
    assert sent >= 4999  # every view once the profile is a buyer
    outbox = p["outbox"]
    assert outbox[-1]["offset"] == 19_996  # the last view's activation is kept
    assert sum(map(entry_bytes, outbox)) <= LIMITS.max_outbox_bytes
    # The ids of the latest max_event_ids events are kept against re-sends (all 20,000 are
    # inside the dedup window): the others were forgotten, and counted.
    assert len(p["event_ids"]) == LIMITS.max_event_ids
    assert p["limited"] == {"outbox": entries - len(outbox),
                            "event_ids": 20_000 - LIMITS.max_event_ids}
    ids = len(AVRO_PROFILES.encode({**new_profile("m1"), "event_ids": p["event_ids"]})) \
        - len(AVRO_PROFILES.encode(new_profile("m1")))
    assert ids < 25 * LIMITS.max_event_ids
    assert len(AVRO_PROFILES.encode(p)) < LIMITS.max_outbox_bytes + ids + 10_000
    # msgpack spends field names on every entry and record: 1.5 times Avro's bytes here
    assert len(PROFILES.encode(p)) < 2 * (LIMITS.max_outbox_bytes + ids + 10_000)
    assert elapsed < 60, elapsed


# ---------------------------------------------------------------- giant profiles


def giant_events():
    """100,000 events over 120 days: every other one of 125 event names (25 beyond the name
    limit), the others `attribute` events: 3,000 bring 2 new fields each (6,000 attribute
    fields), then 900 set strings of 100 characters on the 900 fields that were recorded,
    then 46,100 replace those strings with others of the same length."""
    names = [f"e{k:03d}" for k in range(125)]
    gap = 120 * DAY // 100_000
    for i in range(100_000):
        t, j = T0 + i * gap, i // 2
        if i % 2 == 0:
            yield ev(names[j % 125], t, {"v": i})
        elif j < 3000:
            yield ev("attribute", t, {f"a{2 * j:04d}": j, f"a{2 * j + 1:04d}": j})
        elif j < 3900:
            yield ev("attribute", t, {f"a{j - 3000:04d}": f"{j:0100d}"})
        else:
            yield ev("attribute", t, {f"a{(j - 3900) % 655:04d}": f"{j:0100d}"})


GIANT_BOUND = 250_000  # bytes of the giant profile's encoded record (measured: ~190 KB)


def test_a_giant_profile_stays_bounded_and_counts_what_it_left_out():
    """Applied as the profile agent applies them (segments, deliveries and journeys of the
    example definitions judged on every event, each input committed before the next)."""
    agent = Agent(DEFS)
    started = time.perf_counter()
    for n, e in enumerate(giant_events()):
        agent.feed(event_input(e, 0, n), committed=n)
    elapsed = time.perf_counter() - started
    p = agent.profile
    size = len(PROFILES.encode(p))
    print(f"giant profile: 100,000 events in {elapsed:.1f} s, {size} bytes encoded")
    assert size < GIANT_BOUND
    assert elapsed < 60, elapsed
    # Names: the first 100 (and attribute) are recorded; the other 25 names' events are not.
    assert len(p["counts"]) == 101
    assert sum(p["counts"].values()) == 100_000 - 10_000
    # Fields: 100 `v` fields and 900 of the 6,000 attribute fields.
    assert field_count(p) == LIMITS.max_fields == 1000
    assert set(p["aggregates"]["attribute"]) == {f"a{k:04d}" for k in range(900)}
    # Text: 655 strings of 100 characters fit in 64 KiB; the other 245 fields lost theirs.
    assert profile_text_bytes(p) == 65_500 <= LIMITS.max_text_bytes
    assert len(p["last"]["attribute"]) == 655
    # Event ids: about 5,800 events in each 7 days; the latest 1,000 ids are kept.
    assert len(p["event_ids"]) == LIMITS.max_event_ids
    assert p["limited"] == {"event_names": 10_000, "fields": 5_100, "text": 245,
                            "event_ids": 100_000 - LIMITS.max_event_ids}
    for per_name in p["hourly"].values():
        assert len(per_name) <= HOURS_KEPT + 1
    for per_name in p["daily"].values():
        assert len(per_name) <= DAYS_KEPT + 1
    # Thousands of fields more change nothing but the counters.
    before = PROFILES.encode(p)
    record_event(p, ev("attribute", p["last_seen"] + 1,
                       {f"b{k:03d}": k for k in range(200)}))
    assert p["limited"]["fields"] == 5_300
    assert len(PROFILES.encode(p)) < len(before) + 100


def worst_profile() -> dict:
    """The largest profile the default limits allow (every name with a bucket in each hour of
    7 days and each day of 90, counts near 2**31, 1,000 fields of 64-character names with
    numbers and the text limit's worth of strings, the largest request, 256-character ids,
    and the buffer, outbox, merge ids and event ids at their limits), with no journey."""
    p = new_profile("u" * MAX_ID)
    names = [f"n{k:03d}".ljust(64, "x") for k in range(LIMITS.max_event_names)]
    names += sorted(ALWAYS_RECORDED)
    per = LIMITS.max_fields // len(names) + 1
    times = sorted({T0 - d * DAY for d in range(DAYS_KEPT + 1)}
                   | {T0 - h * HOUR for h in range(HOURS_KEPT + 1)})
    for name in names:
        fields = [f"{name[:8]}f{k}".ljust(64, "y") for k in range(per)]
        for t in times:
            record_event(p, ev(name, t, {f: 1.5 for f in fields}))
        record_event(p, ev(name, T0, {f: "z" * 200 for f in fields}))
    record_event(p, ev("__metadata", T0, {f"k{i}".ljust(64, "k"): "v" * 260
                                          for i in range(200)}, request_id="r" * MAX_ID))
    for key in ("hourly", "daily"):
        for per_name in p[key].values():
            for index in per_name:
                per_name[index] = 2**31
    p["counts"] = {name: 2**40 for name in p["counts"]}
    p["positions"] = {str(k): 2**62 for k in range(64)}
    p["merges_done"] = [f"{'v' * MAX_ID}>{'u' * MAX_ID}@{k}:{2**62}"
                        for k in range(LIMITS.max_merges_remembered)]
    value = b"x" * 700
    entry = {"source": f"7:{2**62}", "offset": 2**62,
             "records": [{"topic": "journey-transitions", "key": "u" * MAX_ID, "value": value}]}
    per_entry = len(entry["source"]) + len("journey-transitions") + MAX_ID + len(value)
    p["outbox"] = [entry] * (LIMITS.max_outbox_bytes // per_entry)
    p["buffered"] = [b"x" * 1000] * (LIMITS.max_buffered_bytes // 1000)
    p["event_ids"] = {event_key(f"e{k}"): T0 - k for k in range(LIMITS.max_event_ids)}
    p["duplicates"] = 2**62
    return p


WORST_BOUND = 800_000  # bytes: the worst profile without journeys in Avro (measured: ~780 KB)


def test_the_largest_profile_the_limits_allow_fits_in_a_kafka_record():
    """A record is msgpack up to LARGE bytes and Avro past it (schemas/internal.py): Avro's
    size of the largest profile bounds every record."""
    assert LARGE + 10_000 < KAFKA_RECORD_LIMIT
    p = worst_profile()
    assert field_count(p) == LIMITS.max_fields
    assert profile_text_bytes(p) <= LIMITS.max_text_bytes
    data = PROFILES.encode(p)
    assert data[:2] != MAGIC and data == AVRO_PROFILES.encode(p)  # past LARGE: Avro
    assert PROFILES.decode(data) == AVRO_PROFILES.decode(data)
    size = len(data)
    print(f"worst profile without journeys: {size} bytes")
    assert size < WORST_BOUND
    # The example onboarding journey's record, every cell reached, in three versions: what
    # each journey record may add.
    journey = example_journey_record()
    per_journey = len(AVRO_PROFILES.encode({**new_profile(""), "journeys": {"j": journey}})) \
        - len(AVRO_PROFILES.encode(new_profile("")))
    print(f"example journey record (3 versions): {per_journey} bytes")
    # Records of journeys like it, as many as the journey limit allows, fit too.
    assert size + LIMITS.max_journeys * per_journey < KAFKA_RECORD_LIMIT


def example_journey_record() -> dict:
    """The onboarding journey's record with every stage, step, milestone, exit and the goal
    reached, in the three versions a record keeps."""
    j = next(j for j in DEFS.journeys if j.id == "onboarding")
    cells = {"journey": None, "goal": None, "position": None}
    for s in j.stages:
        cells[f"stage:{s.id}"] = cells[f"milestone:{s.id}"] = None
        for i, _ in enumerate(s.exits):
            cells[f"exit:{s.id}:{i}"] = None
        for st in s.steps:
            cells[f"step:{st.id}"] = None
    sparse = {str(v): {k: {"first": T0 + v, "last_left": T0 + v + 1, "last_reached": T0 + v}
                       for k in cells}
              for v in (1, 2, 3)}
    branches = {str(v): {"check": "active", "offer": "coupon"} for v in (1, 2, 3)}
    return {"version": 3, "status": "active", "stage": "welcome", "step": "wait_visit",
            "seq": 2**40, "due": T0, "runs": 3, "entered_at": T0, "left_at": T0,
            "goal_reached": True, "sparse": sparse, "branches": branches}
