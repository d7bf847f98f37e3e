"""Judging only what an input can change (issue 18): an event re-judges the segments its name
can change, those that read the clock or the current event, and those whose referenced
segments changed; every other segment keeps its membership. The promise: the memberships and
segment changes are exactly those of judging every segment on every event."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline import DEFINITIONS as BENCH_DEFINITIONS
from state.conditions import events_read, parse_condition
from state.definitions import load_definitions
from state.durations import DAY, HOUR
from state.judging import judge_segments, set_membership
from state.profile import new_profile, record_event

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EXAMPLES = (__import__("pathlib").Path(__file__).parents[2] / "examples"
            / "definitions.yaml").read_text()


def reads(condition: dict):
    return events_read(parse_condition(condition))


def test_what_each_reference_lets_an_event_change():
    assert reads({"count.view": {"gte": 2}}) == {"view"}
    assert reads({"attribute.plan": {"eq": "gold"}}) == {"attribute"}
    assert reads({"last.view.path": {"eq": "/"}}) == {"view"}
    assert reads({"sum.purchase.amount": {"gte": 1}}) == {"purchase"}
    assert reads({"all": [{"count.view": {"gte": 1}},
                          {"any": [{"max.purchase.items": {"gt": 3}}]}]}) == {"view", "purchase"}
    assert reads({"segment": "buyers"}) == frozenset()  # the judge follows references itself
    # Any input can change these: the clock, the current event, every event's count or times.
    for clocked in ({"count.view": {"gte": 2, "within": "1d"}}, {"since.view": {"lt": "2d"}},
                    {"since.last_seen": {"gt": "1h"}}, {"count.*": {"gte": 3}},
                    {"first_seen": {"gt": 0}}, {"last_seen": {"gt": 0}},
                    {"event.name": {"eq": "view"}}, {"request.path": {"eq": "/"}},
                    {"all": [{"count.view": {"gte": 1}}, {"since.view": {"lt": "1d"}}]}):
        assert reads(clocked) is None, clocked


def _event(name: str, t: int, n: int, values: dict | None = None) -> dict:
    return {"event_id": f"e{n}", "name": name, "time": t, "visitor_id": "v1", "user_id": None,
            "request_id": None, "values": values or {}}


def _judge(profile, defs, event, incremental: bool, first: bool = False):
    return judge_segments(profile, defs, event["time"], f"0:{event['event_id']}",
                          event["event_id"], event_name=event["name"] if incremental else None,
                          first=first)


NAMES = ("view", "purchase", "attribute", "add_to_cart", "click", "identify", "__metadata")
VALUES = {"purchase": st.fixed_dictionaries({"amount": st.integers(0, 40000),
                                             "items": st.integers(0, 6)}),
          "attribute": st.fixed_dictionaries({"pref_cd": st.sampled_from([13, 27, 8]),
                                              "plan": st.sampled_from(["free", "premium"])}),
          "add_to_cart": st.fixed_dictionaries({"price": st.integers(0, 20000)}),
          "view": st.fixed_dictionaries({"path": st.sampled_from(["/", "/search"])}),
          "click": st.fixed_dictionaries({"target": st.sampled_from(["banner", "nav"])}),
          "__metadata": st.fixed_dictionaries({"path": st.sampled_from(["/campaign/spring",
                                                                       "/"])})}
events = st.lists(st.tuples(st.sampled_from(NAMES),
                            st.sampled_from([0, 1, HOUR, 5 * HOUR, DAY, 3 * DAY, 9 * DAY]),
                            st.data()), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from([BENCH_DEFINITIONS, EXAMPLES]), events)
def test_judging_what_an_event_can_change_is_judging_everything(source, steps):
    """At every event of any sequence (late events and gaps of days included), the
    memberships and changes equal those of judging every segment."""
    defs = load_definitions(source)
    fast, full = new_profile("v1"), new_profile("v1")
    t = T0
    for n, (name, gap, data) in enumerate(steps):
        t += gap
        values = data.draw(VALUES[name]) if name in VALUES else {}
        event = _event(name, t - (HOUR if gap == 1 else 0), n, values)  # some come late
        first = fast["last_seen"] is None
        record_event(fast, event)
        record_event(full, event)
        got = _judge(fast, defs, event, incremental=True, first=first)
        want = _judge(full, defs, event, incremental=False)
        assert got == want, (n, event)
        assert fast["segments"] == full["segments"]


DEFS_V1 = load_definitions("""
segments:
  - {id: viewers, condition: {count.view: {gte: 1}}}
""")
DEFS_V2 = load_definitions("""
segments:
  - {id: viewers, condition: {count.view: {gte: 1}}}
  - {id: not_buyers, condition: {not: {count.purchase: {gte: 1}}}}
""")


def test_a_condition_true_of_no_history_holds_from_the_first_event():
    """A condition true of an empty history (no purchase yet) holds from the first event,
    whatever its name, and the first event's outputs say so."""
    assert DEFS_V2.segments_of_no_history == {"not_buyers"}
    profile = new_profile("v1")
    event = _event("view", T0, 1)
    record_event(profile, event)
    members, outputs = _judge(profile, DEFS_V2, event, incremental=True, first=True)
    assert members == {"viewers", "not_buyers"}
    assert [o.record["change_id"] for o in outputs] == [
        "0:e1/segment/not_buyers/entered", "0:e1/segment/viewers/entered"]
    assert profile["segments_key"] == DEFS_V2.segments_key and profile["segments_judged_at"] == T0


def test_new_definitions_judge_every_segment_on_the_next_event():
    """A segment added after the profile was judged is judged on its next event, though the
    event's name cannot change the segment's condition; a segment removed is left."""
    profile = new_profile("v1")
    first = _event("view", T0, 1)
    record_event(profile, first)
    _judge(profile, DEFS_V1, first, incremental=True)
    assert profile["segments"] == ["viewers"]
    second = _event("view", T0 + 1, 2)
    record_event(profile, second)
    members, outputs = _judge(profile, DEFS_V2, second, incremental=True)
    assert members == {"viewers", "not_buyers"}
    assert [o.record["change"] for o in outputs] == ["entered"]
    third = _event("view", T0 + 2, 3)
    record_event(profile, third)
    only_buyers = load_definitions("""
segments:
  - {id: not_buyers, condition: {not: {count.purchase: {gte: 1}}}}
""")
    members, outputs = _judge(profile, only_buyers, third, incremental=True)
    assert members == {"not_buyers"}
    assert [(o.record["segment"], o.record["change"]) for o in outputs] == [("viewers", "left")]


def test_a_segment_on_a_batch_audience_is_judged_again_on_any_event():
    """A batch audience changes between events (the sidecar's verdict): a segment that refers
    to one is judged on the next event whatever its name."""
    defs = load_definitions("""
segments:
  - {id: vip, sql: "SELECT profile_id FROM snapshot_profiles"}
  - {id: vip_buyers, condition: {all: [{segment: vip}, {count.purchase: {gte: 1}}]}}
""")
    profile = new_profile("m1")
    buy = _event("purchase", T0, 1)
    record_event(profile, buy)
    _judge(profile, defs, buy, incremental=True)
    assert profile["segments"] == []
    set_membership(profile, "vip", True, T0 + 1, "audience:vip:1:m1", "audience:vip:1:m1")
    view = _event("view", T0 + 2, 2)
    record_event(profile, view)
    members, outputs = _judge(profile, defs, view, incremental=True)
    assert members == {"vip", "vip_buyers"}
    assert [o.record["segment"] for o in outputs] == ["vip_buyers"]


def test_a_segment_whose_reference_changed_is_judged_again():
    defs = load_definitions("""
segments:
  - {id: buyers, condition: {count.purchase: {gte: 1}}}
  - {id: loyal, condition: {all: [{segment: buyers}, {count.view: {gte: 2}}]}}
""")
    profile = new_profile("m1")
    for n, name in enumerate(("view", "view", "purchase")):
        event = _event(name, T0 + n, n)
        record_event(profile, event)
        members, outputs = _judge(profile, defs, event, incremental=True)
    assert members == {"buyers", "loyal"}  # loyal reads no purchase, but buyers changed
    assert sorted(o.record["segment"] for o in outputs) == ["buyers", "loyal"]
    click = _event("click", T0 + 9, 9)
    record_event(profile, click)
    assert _judge(profile, defs, click, incremental=True) == ({"buyers", "loyal"}, [])
