"""Segments that follow the clock (issue 20): a profile's segments are judged again when time
alone changes one (`since.*`, counts `within` a window), at that moment, with no event.

`next_change` must be exact: no timed segment's judgement differs from the profile's
membership at any moment before it, and one differs at it."""
from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline import DEFINITIONS as BENCH_DEFINITIONS
from state.conditions import EvalContext
from state.definitions import load_definitions
from state.durations import DAY, HOUR, MINUTE
from state.judging import judge_segments
from state.processing import step, waits
from state.profile import Limits, fold_visitor, new_profile, record_event
from state.time_changes import SEGMENTS_WAKEUP, next_change
from tests.unit.test_processing import WIRE, event_input, loads

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EXAMPLES = (Path(__file__).parents[2] / "examples" / "definitions.yaml").read_text()
TIMED = load_definitions("""
segments:
  - {id: recent_cart, condition: {since.add_to_cart: {lt: 2d}}}
  - {id: quiet_week, condition: {since.last_seen: {gte: 7d}}}
  - {id: exactly_a_day, condition: {since.view: {gt: 1d, lte: 25h}}}
  - {id: in_list, condition: {since.first_seen: {in: [1h, 3h]}}}
  - {id: busy_hour, condition: {count.view: {gte: 3, within: 1h}}}
  - {id: two_today, condition: {count.*: {eq: 2, within: 1d}}}
  - {id: monthly, condition: {count.purchase: {gte: 1, within: 30d}}}
  - {id: not_recent, condition: {not: {since.purchase: {lt: 3d}}}}
  - id: cart_abandoners
    condition:
      all:
        - {count.add_to_cart: {gte: 1}}
        - {since.add_to_cart: {lt: 2d}}
        - not: {segment: monthly}
""")
NAMES = ("view", "purchase", "add_to_cart", "click")


def _event(name: str, t: int, n: int) -> dict:
    return {"event_id": f"e{n}", "name": name, "time": t, "visitor_id": "v1", "user_id": None,
            "request_id": None, "values": {}}


def _judged(history: list[tuple[str, int]], defs) -> dict:
    profile = new_profile("v1")
    for n, (name, t) in enumerate(history):
        record_event(profile, _event(name, t, n))
        judge_segments(profile, defs, t, f"0:{n}", f"e{n}")
    return profile


def _differs(profile: dict, defs, t: int) -> list[str]:
    """The timed segments whose judgement at `t` differs from the profile's memberships."""
    members = frozenset(profile["segments"])
    ctx = EvalContext(profile=profile, event=None, now=t, segments=members)
    return [s.id for s, _ in defs.timed_segments
            if s.condition.test(ctx) != (s.id in members)]


histories = st.lists(st.tuples(st.sampled_from(NAMES),
                               st.sampled_from([0, 1, MINUTE, 20 * MINUTE, HOUR, 5 * HOUR,
                                                DAY - 1, DAY, 2 * DAY, 8 * DAY])),
                     min_size=1, max_size=25)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.sampled_from(["timed", "bench", "examples"]), histories, st.randoms())
def test_the_next_change_is_the_first_moment_a_segment_is_judged_otherwise(which, gaps, rnd):
    defs = {"timed": TIMED, "bench": load_definitions(BENCH_DEFINITIONS),
            "examples": load_definitions(EXAMPLES)}[which]
    t, history = T0, []
    for name, gap in gaps:
        t += gap
        history.append((name, t))
    profile = _judged(history, defs)
    now = t
    due = next_change(profile, defs.timed_segments, now)
    horizon = due if due is not None else now + 120 * DAY
    # Before it nothing differs: at the points where anything could (bucket and duration
    # edges, one ms either side) and at random moments.
    probes = {now + 1, horizon - 1}
    for base in range(now // HOUR * HOUR, min(horizon, now + 40 * DAY), HOUR):
        probes.update((base - 1, base, base + 1))
    probes.update(rnd.randrange(now + 1, horizon) for _ in range(50) if horizon > now + 1)
    for probe in sorted(p for p in probes if now < p < horizon):
        assert not _differs(profile, defs, probe), (probe - now, history)
    if due is not None:
        assert due > now and _differs(profile, defs, due), (due - now, history)


def test_a_cart_left_two_days_ago_leaves_the_segment_at_that_moment():
    profile = _judged([("add_to_cart", T0)], TIMED)
    assert "recent_cart" in profile["segments"] and "cart_abandoners" in profile["segments"]
    assert next_change(profile, TIMED.timed_segments, T0) == T0 + 1 * HOUR  # in_list first
    assert _differs(profile, TIMED, T0 + 2 * DAY) == ["recent_cart", "cart_abandoners"]


# ------------------------------------------------------------------------ the profile agent

DEFS = load_definitions("""
segments:
  - {id: cart_abandoners, condition: {all: [{count.add_to_cart: {gte: 1}},
                                            {since.add_to_cart: {lt: 2d}}]}}
  - {id: lapsed, condition: {since.last_seen: {gt: 7d}}}
journeys:
  - id: winback
    entry: {segment: lapsed}
    stages:
      - id: ask
        steps:
          - {id: mail, kind: activation, destination: email, payload: {template: miss-you}, next: done}
          - {id: done, kind: end}
""")


def _wakeup(due: int) -> dict:
    return {"kind": "wakeup", "profile_id": "m1", "source_partition": -1, "source_offset": -1,
            "event": None, "visitor_id": None, "member_id": None, "merge_id": None,
            "state": None, "journey": SEGMENTS_WAKEUP, "seq": 0, "due": due}


def _ids(sends) -> list[str]:
    records = [loads(r["value"]) for r in sends]
    return [r.get("change_id") or r.get("transition_id") or r.get("activation_id")
            for r in records]


def test_the_profile_agent_wakes_when_a_segment_changes_by_time():
    cart = event_input("m1", 3, 7, name="add_to_cart", t=T0)
    profile, sends = step(None, cart, 0, None, DEFS, WIRE)
    assert profile["segments"] == ["cart_abandoners"]
    due = T0 + 2 * DAY  # since.add_to_cart < 2d stops holding
    assert profile["segments_due"] == due and (SEGMENTS_WAKEUP, 0, due) in waits(profile)

    # A wake-up for another moment is stale: nothing happens.
    same, sends = step(profile, _wakeup(due - 1), 1, None, DEFS, WIRE)
    assert sends == [] and same["segments"] == ["cart_abandoners"]

    profile, sends = step(profile, _wakeup(due), 2, None, DEFS, WIRE)
    assert profile["segments"] == [] and profile["segments_judged_at"] == due
    assert _ids(sends) == [f"{WIRE.generation}/m1/time:{due}/segment/cart_abandoners/left"]
    change = loads(sends[0]["value"])
    assert change["time"] == due and change["caused_by"] == f"time:m1:{due}"
    lapsed_at = T0 + 7 * DAY + 1
    assert profile["segments_due"] == lapsed_at

    # Lapsed: the segment is entered, and the journey on it is entered with it.
    profile, sends = step(profile, _wakeup(lapsed_at), 3, None, DEFS, WIRE)
    assert profile["segments"] == ["lapsed"]
    topics = [r["topic"] for r in sends]
    assert topics[0] == "segment-changes" and "journey-transitions" in topics
    assert "activations" in topics
    assert profile["journeys"]["winback"]["status"] == "left"  # mail, then the end
    assert profile["segments_due"] is None  # lapsed stays lapsed until an event comes

    # The same wake-up read again at its own offset (a redelivery) sends what it made again;
    # anywhere else it makes nothing.
    again, resent = step(profile, _wakeup(lapsed_at), 3, None, DEFS, WIRE)
    assert resent == sends
    again, resent = step(profile, _wakeup(lapsed_at), 4, None, DEFS, WIRE)
    assert resent == []


def test_an_event_moves_the_wake_up():
    profile, _ = step(None, event_input("m1", 3, 7, name="add_to_cart", t=T0), 0, None, DEFS,
                      WIRE)
    profile, _ = step(profile, event_input("m1", 3, 8, name="add_to_cart", t=T0 + DAY), 1, None,
                      DEFS, WIRE)
    assert profile["segments_due"] == T0 + 3 * DAY
    assert {w for w in waits(profile) if w[0] == SEGMENTS_WAKEUP} == {
        (SEGMENTS_WAKEUP, 0, T0 + 3 * DAY)}
    stale, sends = step(profile, _wakeup(T0 + 2 * DAY), 2, None, DEFS, WIRE)
    assert sends == [] and stale["segments"] == ["cart_abandoners"]


def test_random_histories_leave_no_change_unscheduled():
    """Stepping events and the wake-ups they schedule, in time order, gives at each wake-up the
    memberships a judgement at that moment gives (the stream agrees with a recount then)."""
    rnd = random.Random(5)
    for _ in range(40):
        profile, offset, t = None, 0, T0
        for n in range(rnd.randrange(1, 12)):
            t += rnd.choice([MINUTE, HOUR, DAY, 3 * DAY])
            while profile is not None and profile["segments_due"] is not None \
                    and profile["segments_due"] <= t:
                due = profile["segments_due"]
                profile, _ = step(profile, _wakeup(due), offset, None, DEFS, WIRE)
                offset += 1
                assert not _differs(profile, DEFS, due)
            name = rnd.choice(["add_to_cart", "view"])
            profile, _ = step(profile, event_input("m1", 3, n, name=name, t=t), offset, None,
                              DEFS, WIRE)
            offset += 1
            assert not _differs(profile, DEFS, t)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(histories, histories, st.integers(min_value=1, max_value=3))
def test_a_window_never_holds_more_than_the_profile_counted(mine, theirs, names):
    """next_change skips a windowed count whose all-time total (`counts`) cannot cross its
    threshold: that is exact only if every bucket is counted in `counts` too, after events
    refused by the name limit and after merges alike."""
    limits = Limits(max_event_names=names)
    member, visitor = new_profile("m1"), new_profile("v1")
    for profile, history in ((member, mine), (visitor, theirs)):
        t = T0
        for n, (name, gap) in enumerate(history):
            t += gap
            record_event(profile, _event(name, t, n), limits)
    fold_visitor(member, visitor, limits)
    for profile in (member, visitor):
        for table in ("hourly", "daily"):
            for name, buckets in profile[table].items():
                assert sum(buckets.values()) <= profile["counts"].get(name, 0), (table, name)
