"""The journey state machine (state/journey_machine.py) against its written semantics,
docs/journeys.md, rule by rule: every test is named after the rule it checks.

Journeys are built directly from the typed model (state/journeys.py). Every input goes through
`record_event` first and then `advance`, as the profile agent does; wake-ups are called as the
agent calls them (no event, the due time as `now`, source "wakeup:<profile>:<journey>:<seq>").
"""
import copy
import signal
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from state.conditions import parse_condition
from state.definitions import DefinitionSet, Segment
from state.durations import DAY, HOUR, MINUTE
from state.journey_machine import TRANSITIONS, advance
from state.journeys import Branch, Journey, Stage, Step
from state.judging import ACTIVATIONS, judge_segments
from state.profile import fold_visitor, new_profile, record_event

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a midnight
WEEKDAY0 = datetime.fromtimestamp(T0 / 1000, timezone.utc).weekday()
START = parse_condition({"event.name": {"eq": "start"}})


# ---------------------------------------------------------------- small helpers


def seg(name):
    return parse_condition({"segment": name})


def wait(sid, **kw):
    return Step(sid, "wait", **kw)


def idle(sid="idle"):
    """A wait that never ends within a test: the profile rests here."""
    return wait(sid, duration=365 * DAY)


def journey(*stages, jid="j", version=1, entry=START, **kw):
    return Journey(jid, version, entry, tuple(stages), **kw)


def stage(sid, *steps, **kw):
    return Stage(sid, tuple(steps), **kw)


def event(name="ping", t=T0, **values):
    return {"event_id": f"{name}@{t}", "name": name, "time": t, "values": values,
            "request_id": None}


def send(profile, journeys, ev, segments=(), versions=None):
    """One event, as the profile agent applies it."""
    record_event(profile, ev)
    latest = {j.id: j for j in journeys}
    versions = versions or {j.id: {j.version: j} for j in journeys}
    return advance(profile, versions, latest, ev, set(segments), ev["time"], ev["event_id"],
                   ev["event_id"])


def wake(profile, journeys, jid, seq, due, segments=(), versions=None):
    """The wake-up (jid, seq) due at `due`; its cause as rule 10 and the profile agent name it."""
    latest = {j.id: j for j in journeys}
    versions = versions or {j.id: {j.version: j} for j in journeys}
    source = f"wakeup:{profile['profile_id']}:{jid}:{seq}"
    return advance(profile, versions, latest, None, set(segments), due, source, source,
                   wakeup=(jid, seq))


def moves(outputs, journey_id=None):
    """(kind, from, to) of each transition, in order."""
    return [(o.record["kind"], o.record["from"], o.record["to"]) for o in outputs
            if o.topic == TRANSITIONS and journey_id in (None, o.record["journey"])]


def kinds(outputs):
    return [m[0] for m in moves(outputs)]


def st(profile, jid="j"):
    return profile["journeys"][jid]


def sparse(profile, jid="j", version=1):
    return st(profile, jid)["sparse"][str(version)]


@contextmanager
def time_limit(seconds):
    """Raise TimeoutError when the block runs longer (a machine that never stops)."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds}s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- rule 1: time


def test_rule_1_times_are_the_event_time_never_the_wall_clock():
    t = 978_307_200_000  # 2001-01-01: long before the wall clock
    j = journey(stage("s", wait("w", until=t + HOUR, next="w2"), idle("w2")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", t))
    assert outs and {o.record["time"] for o in outs} == {t}
    assert st(p)["entered_at"] == t
    assert st(p)["step"] == "w" and st(p)["due"] == t + HOUR  # not passed: it is 2001 here
    assert sparse(p)["journey"] == {"first": t, "last_reached": t, "last_left": None}


def test_rule_1_a_wakeup_runs_at_its_due_time():
    j = journey(stage("s", wait("w", duration=2 * HOUR, next="w2"), idle("w2")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    seq, due = st(p)["seq"], st(p)["due"]
    assert due == T0 + 2 * HOUR
    outs = wake(p, [j], "j", seq, due)
    assert {o.record["time"] for o in outs} == {due}
    assert sparse(p)["step:w"]["last_left"] == due
    assert sparse(p)["step:w2"]["first"] == due
    assert st(p)["due"] == due + 365 * DAY


def test_rule_1_a_late_event_moves_the_journey_at_its_latest_time_not_before():
    j = journey(stage("s", idle()), stage("t", idle(), entry=parse_condition(
        {"event.name": {"eq": "go"}})), goal=parse_condition({"event.name": {"eq": "buy"}}))
    p = new_profile("p1")
    send(p, [j], event("start", T0 + 5 * HOUR))
    outs = send(p, [j], event("go", T0 + HOUR))  # late: it happened before the entry
    assert moves(outs)[0] == ("entered_stage", "s", "t")
    assert {o.record["time"] for o in outs} == {T0 + 5 * HOUR}
    assert sparse(p)["stage:s"] == {"first": T0 + 5 * HOUR, "last_reached": T0 + 5 * HOUR,
                                    "last_left": T0 + 5 * HOUR}
    outs = send(p, [j], event("buy", T0 + 2 * HOUR))  # late again
    assert "goal_reached" in [k for k, _, _ in moves(outs)]
    assert {o.record["time"] for o in outs} == {T0 + 5 * HOUR}
    assert sparse(p)["goal"]["first"] == T0 + 5 * HOUR
    assert st(p)["left_at"] == st(p)["entered_at"] == T0 + 5 * HOUR


# ---------------------------------------------------------------- rule 2: entering


def test_rule_2_enters_when_entry_matches_on_the_updated_data():
    j = journey(stage("s", idle()), entry=parse_condition({"count.purchase": {"gte": 2}}))
    p = new_profile("p1")
    assert send(p, [j], event("purchase", T0)) == []
    assert "j" not in p["journeys"]
    outs = send(p, [j], event("purchase", T0 + 1))  # counted before the journey looks
    assert moves(outs) == [("entered_journey", None, "j"), ("entered_stage", None, "s"),
                           ("entered_step", None, "idle")]
    assert st(p)["status"] == "active" and st(p)["runs"] == 1


def test_rule_2_entry_by_segment_uses_the_segments_given():
    j = journey(stage("s", idle()), entry=seg("members"))
    p = new_profile("p1")
    assert send(p, [j], event("view", T0)) == []
    assert kinds(send(p, [j], event("view", T0 + 1), segments={"members"}))[0] == \
        "entered_journey"


def test_rule_2_a_wakeup_never_makes_a_profile_enter():
    j = journey(stage("s", idle()), entry=seg("members"))
    other = journey(stage("s", wait("w", duration=HOUR, next="w2"), idle("w2")), jid="k")
    p = new_profile("p1")
    send(p, [j, other], event("start", T0))  # enters k only: not a member yet
    assert "j" not in p["journeys"] and st(p, "k")["status"] == "active"
    seq = st(p, "k")["seq"]
    outs = wake(p, [j, other], "k", seq, T0 + HOUR, segments={"members"})
    assert moves(outs, "j") == []
    assert "j" not in p["journeys"]
    assert moves(outs, "k") == [("entered_step", "w", "w2")]  # the wake-up itself did run


# ---------------------------------------------------------------- rule 3: start stage


def three_stages():
    return journey(stage("s1", idle("i1")), stage("s2", idle("i2"), entry=seg("a")),
                   stage("s3", idle("i3"), entry=seg("b")))


@pytest.mark.parametrize("segments, expected", [({"a", "b"}, "s3"), ({"a"}, "s2"),
                                                ({"b"}, "s3"), (set(), "s1")])
def test_rule_3_starts_in_the_last_stage_whose_entry_matches(segments, expected):
    p = new_profile("p1")
    outs = send(p, [three_stages()], event("start"), segments)
    assert ("entered_stage", None, expected) in moves(outs)
    assert kinds(outs).count("entered_stage") == 1
    assert st(p)["stage"] == expected


def test_rule_3_without_a_matching_stage_it_is_in_the_journey_without_a_stage():
    j = journey(stage("s1", idle("i1"), entry=seg("a")), stage("s2", idle("i2"), entry=seg("b")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert moves(outs) == [("entered_journey", None, "j")]
    assert st(p)["status"] == "active" and st(p)["stage"] is None and st(p)["step"] is None
    assert moves(send(p, [j], event("view", T0 + 1))) == []
    outs = send(p, [j], event("view", T0 + 2), segments={"a"})
    assert moves(outs) == [("entered_stage", None, "s1"), ("entered_step", None, "i1")]
    assert st(p)["stage"] == "s1"


def test_rule_3_from_no_stage_it_enters_the_last_matching_stage():
    j = journey(stage("s1", idle("i1"), entry=seg("a")), stage("s2", idle("i2"), entry=seg("b")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    outs = send(p, [j], event("view", T0 + 1), segments={"a", "b"})
    assert ("entered_stage", None, "s2") in moves(outs)
    assert st(p)["stage"] == "s2"


# ---------------------------------------------------------------- rule 4: re-entry


def short(reentry="none", **kw):
    """Enter on `start`, wait for `leave` (then end), goal: segment g."""
    leave = parse_condition({"event.name": {"eq": "leave"}})
    return journey(stage("s", wait("w", condition=leave, timeout=DAY, on_timeout="end",
                                   next="end"), Step("end", "end")),
                   reentry=reentry, goal=seg("g"), **kw)


def test_rule_4_reentry_none_enters_at_most_once():
    j = short("none")
    p = new_profile("p1")
    assert "entered_journey" in kinds(send(p, [j], event("start", T0)))
    assert "entered_journey" not in kinds(send(p, [j], event("start", T0 + 1)))  # active
    assert ("journey_exited", "s", "end") in moves(send(p, [j], event("leave", T0 + 2)))
    assert send(p, [j], event("start", T0 + 3)) == []
    assert st(p)["runs"] == 1 and st(p)["status"] == "left"


def test_rule_4_unless_goal_reenters_when_the_goal_was_not_reached():
    j = short("unless_goal")
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    send(p, [j], event("leave", T0 + 1))
    assert "entered_journey" in kinds(send(p, [j], event("start", T0 + 2)))
    assert st(p)["runs"] == 2 and st(p)["status"] == "active"


def test_rule_4_unless_goal_never_reenters_after_the_goal():
    j = short("unless_goal")
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    assert "goal_reached" in kinds(send(p, [j], event("view", T0 + 1), segments={"g"}))
    assert send(p, [j], event("start", T0 + 2)) == []
    assert send(p, [j], event("start", T0 + DAY * 30)) == []
    assert st(p)["runs"] == 1 and st(p)["goal_reached"] is True


def test_rule_4_always_reenters_even_after_the_goal():
    j = short("always")
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    send(p, [j], event("view", T0 + 1), segments={"g"})
    assert "entered_journey" in kinds(send(p, [j], event("start", T0 + 2)))
    assert st(p)["runs"] == 2


@pytest.mark.parametrize("reentry", ["always", "unless_goal"])
def test_rule_4_cooldown_blocks_reentry_until_that_long_after_leaving(reentry):
    j = short(reentry, cooldown=HOUR)
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    send(p, [j], event("leave", T0 + MINUTE))
    left = st(p)["left_at"]
    assert left == T0 + MINUTE
    assert send(p, [j], event("start", left + HOUR - 1)) == []
    assert "entered_journey" in kinds(send(p, [j], event("start", left + HOUR)))
    assert st(p)["runs"] == 2


def test_rule_4_never_leaves_and_reenters_on_the_same_input():
    j = short("always")
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    outs = send(p, [j], event("start", T0 + 1), segments={"g"})  # goal and entry both match
    assert moves(outs) == [("goal_reached", "s", "goal"), ("journey_exited", "s", "goal")]
    assert st(p)["status"] == "left"
    assert "entered_journey" in kinds(send(p, [j], event("start", T0 + 2)))


def test_rule_4_a_jump_never_reenters_a_journey_left_on_the_same_input():
    a = journey(stage("s", idle()), jid="a", reentry="always", goal=seg("g"))
    b = journey(stage("s", wait("w", condition=seg("g"), timeout=DAY, on_timeout="i",
                                next="go"), Step("go", "jump", to_journey="a"), idle("i")),
                jid="b")
    p = new_profile("p1")
    send(p, [a, b], event("start", T0))
    outs = send(p, [a, b], event("view", T0 + 1), segments={"g"})  # a: goal; b: jumps to a
    assert moves(outs, "a") == [("goal_reached", "s", "goal"), ("journey_exited", "s", "goal")]
    assert moves(outs, "b")[-1] == ("journey_exited", "s", "jump:a")
    assert st(p, "a")["status"] == "left" and st(p, "a")["runs"] == 1


def test_rule_4_a_jump_to_its_own_journey_does_not_reenter_on_the_same_input():
    j = journey(stage("s", Step("again", "jump", to_journey="j")), reentry="always")
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert kinds(outs).count("entered_journey") == 1
    assert moves(outs)[-1] == ("journey_exited", "s", "jump:j")
    assert st(p)["status"] == "left" and st(p)["runs"] == 1


# ---------------------------------------------------------------- rules 5 and 14: versions


def versioned(version, destination, goal):
    return journey(stage("s", wait("w", duration=HOUR, next="act"),
                         Step("act", "activation", destination=destination, next="end"),
                         Step("end", "end")),
                   version=version, reentry="always", goal=seg(goal))


def test_rule_5_a_new_run_uses_the_newest_version():
    v1, v2 = versioned(1, "one", "g1"), versioned(2, "two", "g2")
    versions = {"j": {1: v1, 2: v2}}
    p = new_profile("p1")
    outs = send(p, [v2], event("start", T0), versions=versions)
    assert st(p)["version"] == 2
    assert {o.record["version"] for o in outs} == {2}


def test_rule_14_a_profile_stays_on_its_version_when_a_newer_one_is_applied():
    v1, v2 = versioned(1, "one", "g1"), versioned(2, "two", "g2")
    p = new_profile("p1")
    send(p, [v1], event("start", T0), versions={"j": {1: v1}})
    seq = st(p)["seq"]
    versions = {"j": {1: v1, 2: v2}}  # version 2 is applied while the profile waits
    # Version 2's goal does not apply to a version 1 profile.
    assert send(p, [v2], event("view", T0 + 1), segments={"g2"}, versions=versions) == []
    assert st(p)["version"] == 1 and st(p)["status"] == "active"
    outs = wake(p, [v2], "j", seq, T0 + HOUR, versions=versions)  # version 1's wake-up
    acts = [o.record for o in outs if o.topic == ACTIVATIONS]
    assert [a["variant"] for a in acts] == ["one"]  # version 1's next step
    assert {o.record["version"] for o in outs if o.topic == TRANSITIONS} == {1}
    assert ("journey_exited", "s", "end") in moves(outs)
    # After leaving, it enters again (reentry always) on the newest version.
    outs = send(p, [v2], event("start", T0 + 2 * HOUR), versions=versions)
    assert "entered_journey" in kinds(outs)
    assert st(p)["version"] == 2 and st(p)["runs"] == 2
    assert {o.record["version"] for o in outs} == {2}
    outs = wake(p, [v2], "j", st(p)["seq"], T0 + 3 * HOUR, versions=versions)
    assert [o.record["variant"] for o in outs if o.topic == ACTIVATIONS] == ["two"]
    assert set(st(p)["sparse"]) == {"1", "2"}


def test_rule_14_version_n_conditions_still_apply_after_n_plus_1():
    v1, v2 = versioned(1, "one", "g1"), versioned(2, "two", "g2")
    versions = {"j": {1: v1, 2: v2}}
    p = new_profile("p1")
    send(p, [v1], event("start", T0), versions={"j": {1: v1}})
    outs = send(p, [v2], event("view", T0 + 1), segments={"g1"}, versions=versions)
    assert moves(outs) == [("goal_reached", "s", "goal"), ("journey_exited", "s", "goal")]
    assert {o.record["version"] for o in outs} == {1}


# ---------------------------------------------------------------- rule 6: priority


def prioritised():
    """s1 (milestone m, exit sx, waiting for condition w) -> s2 -> s3 (entry s3)."""
    return journey(
        stage("s1", wait("w", condition=seg("w"), timeout=DAY, on_timeout="i1", next="i1"),
              idle("i1"), milestone=seg("m"), exits=(seg("sx"),)),
        stage("s2", idle("i2")),
        stage("s3", idle("i3"), entry=seg("s3")),
        goal=seg("g"), exits=(seg("x0"), seg("x")))


def in_s1():
    p = new_profile("p1")
    send(p, [prioritised()], event("start", T0))
    assert st(p)["stage"] == "s1" and st(p)["step"] == "w"
    return p


def test_rule_6_1_goal_wins_over_a_journey_exit():
    p = in_s1()
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"g", "x"})
    assert moves(outs) == [("goal_reached", "s1", "goal"), ("journey_exited", "s1", "goal")]
    assert st(p)["status"] == "left" and st(p)["goal_reached"] is True


def test_rule_6_2_journey_exit_wins_over_a_stage_exit():
    p = in_s1()
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"x", "sx"})
    assert moves(outs) == [("journey_exited", "s1", "exit:1")]  # the second journey exit
    assert st(p)["status"] == "left" and st(p)["goal_reached"] is False


def test_rule_6_3_stage_exit_wins_over_the_milestone():
    p = in_s1()
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"sx", "m"})
    assert moves(outs) == [("stage_exited", "s1", "exit:0"),
                           ("journey_exited", "s1", "stage_exit:s1")]
    assert st(p)["status"] == "left"


def test_rule_6_4_milestone_wins_over_skipping_forward():
    p = in_s1()
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"m", "s3"})
    assert moves(outs) == [("milestone_reached", "s1", "s1"), ("entered_stage", "s1", "s2"),
                           ("entered_step", "w", "i2")]
    assert st(p)["stage"] == "s2"


def test_rule_6_4_milestone_in_the_last_stage_completes_the_journey():
    p = in_s1()
    j = prioritised()
    send(p, [j], event("view", T0 + 1), segments={"s3"})
    assert st(p)["stage"] == "s3"
    assert send(p, [j], event("view", T0 + 2), segments={"m"}) == []  # s3 has no milestone
    last = journey(stage("s1", idle("i1"), milestone=seg("m1")),
                   stage("s2", idle("i2"), milestone=seg("m")))
    q = new_profile("p3")
    send(q, [last], event("start", T0))
    assert moves(send(q, [last], event("view", T0 + 1), segments={"m1"}))[1] == \
        ("entered_stage", "s1", "s2")
    outs = send(q, [last], event("view", T0 + 2), segments={"m"})
    assert moves(outs) == [("milestone_reached", "s2", "s2"),
                           ("journey_exited", "s2", "completed")]
    assert st(q)["status"] == "left" and st(q)["stage"] is None
    assert sparse(q)["milestone:s2"]["first"] == T0 + 2


def test_rule_6_5_skipping_forward_wins_over_the_waiting_step():
    p = in_s1()
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"s3", "w"})
    assert moves(outs) == [("entered_stage", "s1", "s3"), ("entered_step", "w", "i3")]
    assert st(p)["stage"] == "s3"


def test_rule_6_5_skips_forward_to_the_last_later_stage_only():
    j = journey(stage("s1", idle("i1"), entry=seg("a")), stage("s2", idle("i2"), entry=seg("b")),
                stage("s3", idle("i3"), entry=seg("c")), stage("s4", idle("i4"), entry=seg("d")))
    p = new_profile("p1")
    send(p, [j], event("start", T0), segments={"b"})
    assert st(p)["stage"] == "s2"
    assert send(p, [j], event("view", T0 + 1), segments={"a"}) == []  # never backwards
    outs = send(p, [j], event("view", T0 + 2), segments={"a", "c", "d"})
    assert [m for m in moves(outs) if m[0] == "entered_stage"] == [("entered_stage", "s2", "s4")]


def test_rule_6_6_otherwise_the_waiting_step_goes_on():
    p = in_s1()
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"w"})
    assert moves(outs) == [("entered_step", "w", "i1")]
    assert st(p)["stage"] == "s1" and st(p)["step"] == "i1"


def test_rule_6_one_outcome_per_input_and_journey():
    p = in_s1()  # milestone and the waiting step's condition both match: the milestone only
    outs = send(p, [prioritised()], event("view", T0 + 1), segments={"m", "w"})
    assert kinds(outs) == ["milestone_reached", "entered_stage", "entered_step"]
    assert st(p)["stage"] == "s2"


# ---------------------------------------------------------------- rule 7: steps


def test_rule_7_entering_a_stage_enters_its_first_step_and_runs_on_until_a_wait():
    j = journey(stage("s", Step("a1", "activation", destination="email", next="m"),
                      Step("m", "merge", next="w"), wait("w", duration=HOUR, next="a2"),
                      Step("a2", "activation", destination="sms", next="end"),
                      Step("end", "end")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert moves(outs) == [("entered_journey", None, "j"), ("entered_stage", None, "s"),
                           ("entered_step", None, "a1"), ("activation", "a1", "email"),
                           ("entered_step", "a1", "m"), ("entered_step", "m", "w")]
    assert st(p)["step"] == "w"
    outs = wake(p, [j], "j", st(p)["seq"], T0 + HOUR)
    assert moves(outs) == [("entered_step", "w", "a2"), ("activation", "a2", "sms"),
                           ("entered_step", "a2", "end"), ("journey_exited", "s", "end")]


def test_rule_7_activation_record():
    payload = {"template": "welcome", "n": 3}
    j = journey(stage("s", Step("hello", "activation", destination="email", payload=payload,
                                next="i"), idle("i")), jid="onboarding")
    p = new_profile("p1")
    ev = event("start", T0)
    outs = send(p, [j], ev)
    acts = [o for o in outs if o.topic == ACTIVATIONS]
    assert len(acts) == 1 and acts[0].topic == "activations" and acts[0].key == "p1"
    record = acts[0].record
    assert record["delivery"] == "onboarding/hello"
    assert record["variant"] == "email"
    assert record["payload"] == payload
    assert record["profile_id"] == "p1"
    assert record["time"] == T0 and record["caused_by"] == ev["event_id"]
    assert record["activation_id"].startswith(ev["event_id"])
    record["payload"]["template"] = "changed"  # a copy: the definition is untouched
    assert payload["template"] == "welcome"
    again = send(new_profile("p1"), [j], ev)
    assert [o.record for o in again if o.topic == ACTIVATIONS][0]["activation_id"] == \
        record["activation_id"]


def decision_journey():
    return journey(stage(
        "s",
        Step("d", "decision", otherwise="w_else",
             branches=(Branch("vip", "w_vip", condition=seg("vip")),
                       Branch("buyer", "w_buyer", condition=parse_condition(
                           {"count.purchase": {"gte": 1}})))),
        idle("w_vip"), idle("w_buyer"), idle("w_else")))


@pytest.mark.parametrize("segments, purchases, branch", [
    ({"vip"}, 1, "vip"),  # both match: the first branch wins
    (set(), 1, "buyer"),
    ({"vip"}, 0, "vip"),
    (set(), 0, "else"),
])
def test_rule_7_decision_takes_the_first_matching_branch_else_else(segments, purchases, branch):
    p = new_profile("p1")
    for i in range(purchases):
        send(p, [], event("purchase", T0 - 10 + i))
    outs = send(p, [decision_journey()], event("start", T0), segments)
    assert ("branch_taken", "d", branch) in moves(outs)
    assert st(p)["step"] == f"w_{branch}"
    assert st(p)["branches"] == {"1": {"d": branch}}


def ab_journey(jid="j", weights=(70, 30)):
    return journey(stage("s", Step("ab", "ab_test",
                                    branches=(Branch("a", "wa", weight=weights[0]),
                                              Branch("b", "wb", weight=weights[1]))),
                         idle("wa"), idle("wb")), jid=jid)


def ab_variant(pid, j):
    p = new_profile(pid)
    outs = send(p, [j], event("start", T0))
    taken = [m[2] for m in moves(outs) if m[0] == "branch_taken"]
    assert len(taken) == 1 and st(p, j.id)["step"] == f"w{taken[0]}"
    assert st(p, j.id)["branches"] == {"1": {"ab": taken[0]}}
    return taken[0]


def test_rule_7_ab_test_is_deterministic_per_profile():
    j = ab_journey()
    for pid in ("p1", "p2", "visitor-42", "m-9"):
        assert ab_variant(pid, j) == ab_variant(pid, j) == ab_variant(pid, ab_journey())


def test_rule_7_ab_test_splits_by_weight_over_many_profiles():
    j = ab_journey()
    chosen = [ab_variant(f"user-{i}", j) for i in range(2000)]
    share = chosen.count("a") / len(chosen)
    assert 0.66 <= share <= 0.74, share
    assert {ab_variant(f"user-{i}", ab_journey(weights=(100, 0))) for i in range(200)} == {"a"}
    assert {ab_variant(f"user-{i}", ab_journey(weights=(0, 100))) for i in range(200)} == {"b"}


def test_rule_7_ab_test_hashes_the_journey_too():
    here = [ab_variant(f"user-{i}", ab_journey("j", (50, 50))) for i in range(200)]
    there = [ab_variant(f"user-{i}", ab_journey("k", (50, 50))) for i in range(200)]
    assert here != there


def test_rule_7_merge_joins_the_branches():
    j = journey(stage(
        "s",
        Step("d", "decision", otherwise="a2", branches=(Branch("b1", "a1", condition=seg("x")),)),
        Step("a1", "activation", destination="one", next="m"),
        Step("a2", "activation", destination="two", next="m"),
        Step("m", "merge", next="w"), idle("w")))
    for segments, via in (({"x"}, "a1"), (set(), "a2")):
        p = new_profile("p1")
        outs = send(p, [j], event("start", T0), segments)
        assert ("entered_step", via, "m") in moves(outs)
        assert ("entered_step", "m", "w") in moves(outs)
        assert st(p)["step"] == "w"


def test_rule_7_jump_to_a_stage_enters_that_stage():
    j = journey(stage("s1", Step("a", "activation", destination="e", next="go"),
                      Step("go", "jump", to_stage="s3")),
                stage("s2", idle("i2")), stage("s3", idle("i3")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert moves(outs)[-2:] == [("entered_stage", "s1", "s3"), ("entered_step", "go", "i3")]
    assert st(p)["stage"] == "s3" and st(p)["status"] == "active"
    assert sparse(p)["stage:s1"]["last_left"] == T0
    assert "stage:s2" not in sparse(p)


def jump_journeys(k_reentry="none"):
    j = journey(stage("s", Step("go", "jump", to_journey="k")))
    never = parse_condition({"event.name": {"eq": "never"}})
    k = journey(stage("t", idle("ik")), jid="k", entry=never, reentry=k_reentry)
    return [j, k]


def test_rule_7_jump_to_a_journey_leaves_this_one_and_enters_the_other():
    js = jump_journeys()
    p = new_profile("p1")
    outs = send(p, js, event("start", T0))
    assert moves(outs, "j")[-1] == ("journey_exited", "s", "jump:k")
    assert moves(outs, "k") == [("entered_journey", None, "k"), ("entered_stage", None, "t"),
                                ("entered_step", None, "ik")]  # whatever k's entry
    assert st(p, "j")["status"] == "left"
    assert st(p, "k")["status"] == "active" and st(p, "k")["stage"] == "t"


def test_rule_7_jump_to_a_journey_respects_its_reentry_rule():
    js = jump_journeys("none")
    p = new_profile("p1")
    send(p, js, event("start", T0))
    st(p, "k").update(status="left", stage=None, step=None, left_at=T0)  # k's run is over
    js[0] = journey(stage("s", Step("go", "jump", to_journey="k")), reentry="always")
    send(p, js, event("stop", T0 + 1))
    outs = send(p, js, event("start", T0 + 2))  # j again (always), k refuses (none)
    assert "entered_journey" in kinds([o for o in outs if o.record["journey"] == "j"])
    assert moves(outs, "k") == []
    assert st(p, "k")["runs"] == 1 and st(p, "k")["status"] == "left"
    js[1] = jump_journeys("always")[1]
    outs = send(p, js, event("start", T0 + 3))
    assert moves(outs, "k")[0] == ("entered_journey", None, "k")
    assert st(p, "k")["runs"] == 2


def test_rule_7_end_leaves_the_journey():
    j = journey(stage("s", Step("bye", "end")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert moves(outs)[-1] == ("journey_exited", "s", "end")
    assert st(p)["status"] == "left" and st(p)["left_at"] == T0
    assert st(p)["stage"] is None and st(p)["step"] is None


# ---------------------------------------------------------------- rule 8: waits


def test_rule_8_duration_wait_goes_on_by_its_wakeup_only():
    j = journey(stage("s", wait("w", duration=30 * MINUTE, next="a"),
                      Step("a", "activation", destination="email", next="i"), idle("i")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    seq = st(p)["seq"]
    assert st(p)["due"] == T0 + 30 * MINUTE
    assert send(p, [j], event("view", T0 + HOUR)) == []  # past due, but no wake-up yet
    assert st(p)["step"] == "w"
    outs = wake(p, [j], "j", seq, T0 + 30 * MINUTE)
    assert moves(outs)[:2] == [("entered_step", "w", "a"), ("activation", "a", "email")]
    assert st(p)["step"] == "i"


def test_rule_8_until_in_the_future_waits_for_that_time():
    j = journey(stage("s", wait("w", until=T0 + 5 * HOUR, next="i"), idle("i")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    assert st(p)["step"] == "w" and st(p)["due"] == T0 + 5 * HOUR
    outs = wake(p, [j], "j", st(p)["seq"], T0 + 5 * HOUR)
    assert moves(outs) == [("entered_step", "w", "i")]


@pytest.mark.parametrize("until", [T0 - DAY, T0])
def test_rule_8_until_that_has_passed_goes_straight_on(until):
    j = journey(stage("s", wait("w", until=until, next="i"), idle("i")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert moves(outs)[-2:] == [("entered_step", None, "w"), ("entered_step", "w", "i")]
    assert st(p)["step"] == "i" and st(p)["due"] == T0 + 365 * DAY


def test_rule_8_days_wait_goes_straight_on_when_today_is_allowed():
    j = journey(stage("s", wait("w", days=(WEEKDAY0,), next="i"), idle("i")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0 + 15 * HOUR))  # mid-afternoon of an allowed day
    assert ("entered_step", "w", "i") in moves(outs)
    assert st(p)["step"] == "i"


def test_rule_8_days_wait_waits_for_midnight_of_the_next_allowed_weekday():
    later, latest = (WEEKDAY0 + 2) % 7, (WEEKDAY0 + 5) % 7
    j = journey(stage("s", wait("w", days=(latest, later), next="i"), idle("i")))
    p = new_profile("p1")
    send(p, [j], event("start", T0 + 15 * HOUR))
    assert st(p)["step"] == "w"
    due = st(p)["due"]
    assert due == T0 + 2 * DAY
    when = datetime.fromtimestamp(due / 1000, timezone.utc)
    assert when.weekday() == later and (when.hour, when.minute, when.second) == (0, 0, 0)
    outs = wake(p, [j], "j", st(p)["seq"], due)
    assert moves(outs) == [("entered_step", "w", "i")]


def test_rule_8_days_wait_for_yesterday_is_six_days_ahead():
    j = journey(stage("s", wait("w", days=((WEEKDAY0 - 1) % 7,), next="i"), idle("i")))
    p = new_profile("p1")
    send(p, [j], event("start", T0 + HOUR))
    assert st(p)["due"] == T0 + 6 * DAY


def condition_journey():
    bought = parse_condition({"count.purchase": {"gte": 1}})
    return journey(stage("s", wait("w", condition=bought, timeout=2 * DAY, on_timeout="late",
                                   next="now"), idle("now"), idle("late")))


def test_rule_8_condition_wait_goes_to_next_on_a_later_matching_event():
    j = condition_journey()
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    assert st(p)["step"] == "w" and st(p)["due"] == T0 + 2 * DAY
    assert send(p, [j], event("view", T0 + HOUR)) == []
    outs = send(p, [j], event("purchase", T0 + 2 * HOUR))
    assert moves(outs) == [("entered_step", "w", "now")]
    assert st(p)["step"] == "now"


def test_rule_8_condition_wait_ignores_the_event_that_entered_it():
    j = journey(stage("s", wait("w", condition=START, timeout=DAY, on_timeout="late",
                                next="now"), idle("now"), idle("late")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))  # matches the wait's condition, but is not later
    assert st(p)["step"] == "w"
    assert moves(send(p, [j], event("start", T0 + 1))) == [("entered_step", "w", "now")]


def test_rule_8_condition_wait_times_out_by_its_wakeup_to_on_timeout():
    j = condition_journey()
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    seq = st(p)["seq"]
    send(p, [j], event("view", T0 + HOUR))
    outs = wake(p, [j], "j", seq, T0 + 2 * DAY)
    assert moves(outs) == [("entered_step", "w", "late")]
    assert st(p)["step"] == "late"
    assert sparse(p)["step:w"]["last_left"] == T0 + 2 * DAY


# ---------------------------------------------------------------- rule 9: stale and duplicate


def two_waits():
    return journey(stage("s", wait("w1", condition=seg("go"), timeout=HOUR, on_timeout="w2",
                                   next="w2"),
                         wait("w2", duration=DAY, next="i"), idle("i")))


def test_rule_9_a_stale_wakeup_changes_nothing():
    j = two_waits()
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    stale = st(p)["seq"]
    send(p, [j], event("view", T0 + MINUTE), segments={"go"})  # moved on: w1 -> w2
    assert st(p)["step"] == "w2"
    before = copy.deepcopy(p)
    assert wake(p, [j], "j", stale, T0 + HOUR) == []
    assert p == before


def test_rule_9_a_duplicate_wakeup_changes_nothing():
    j = two_waits()
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    seq = st(p)["seq"]
    assert moves(wake(p, [j], "j", seq, T0 + HOUR)) == [("entered_step", "w1", "w2")]
    before = copy.deepcopy(p)
    assert wake(p, [j], "j", seq, T0 + HOUR) == []
    assert p == before
    assert wake(p, [j], "k", st(p)["seq"], T0 + HOUR) == []  # another journey's seq
    assert p == before


def test_rule_9_a_wakeup_after_leaving_changes_nothing():
    j = two_waits()
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    seq = st(p)["seq"]
    g = journey(*j.stages, goal=seg("g"))
    send(p, [g], event("view", T0 + 1), segments={"g"})
    assert st(p)["status"] == "left"
    before = copy.deepcopy(p)
    assert wake(p, [g], "j", seq, T0 + HOUR) == []
    assert p == before


def test_rule_9_a_stale_wakeup_changes_nothing_even_with_time_based_exits():
    late = parse_condition({"since.start": {"gte": "2h"}})
    j = journey(stage("s", wait("w1", duration=3 * HOUR, next="w2"), idle("w2")),
                stage("s2", idle("i2"), entry=seg("next")), exits=(late,))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    stale = st(p)["seq"]
    send(p, [j], event("view", T0 + MINUTE), segments={"next"})  # skips to s2: w1 is stale
    assert st(p)["stage"] == "s2"
    before = copy.deepcopy(p)
    outs = wake(p, [j], "j", stale, T0 + 3 * HOUR)
    assert outs == []
    assert p == before


# ---------------------------------------------------------------- rule 10: transition records


def test_rule_10_transition_records_carry_kind_from_to_and_the_input():
    j = journey(stage("s1", Step("a", "activation", destination="crm", next="w"), idle("w"),
                      milestone=seg("m")),
                stage("s2", idle("w2"), exits=(seg("sx"),)))
    p = new_profile("p1")
    ev = event("start", T0)
    outs = send(p, [j], ev)
    assert {o.topic for o in outs} == {TRANSITIONS, ACTIVATIONS}
    assert TRANSITIONS == "journey-transitions"
    for o in outs:
        if o.topic == TRANSITIONS:
            r = o.record
            assert o.key == "p1" and r["profile_id"] == "p1"
            assert r["journey"] == "j" and r["version"] == 1
            assert r["time"] == T0 and r["caused_by"] == ev["event_id"]
    assert moves(outs) == [("entered_journey", None, "j"), ("entered_stage", None, "s1"),
                           ("entered_step", None, "a"), ("activation", "a", "crm"),
                           ("entered_step", "a", "w")]
    outs = send(p, [j], event("view", T0 + 1), segments={"m"})
    assert moves(outs) == [("milestone_reached", "s1", "s1"), ("entered_stage", "s1", "s2"),
                           ("entered_step", "w", "w2")]
    assert [o.record["stage"] for o in outs] == ["s1", "s2", "s2"]
    outs = send(p, [j], event("view", T0 + 2), segments={"sx"})
    assert moves(outs) == [("stage_exited", "s2", "exit:0"),
                           ("journey_exited", "s2", "stage_exit:s2")]


def test_rule_10_transition_ids_are_deterministic():
    j = journey(stage("s", Step("a", "activation", destination="crm", next="d"),
                      Step("d", "decision", otherwise="w", branches=(
                          Branch("b", "w", condition=seg("b")),)), idle("w")))
    ev = event("start", T0)
    first, second = new_profile("p1"), new_profile("p1")
    outs1, outs2 = send(first, [j], ev), send(second, [j], ev)
    assert outs1 == outs2  # same input, same outputs, same ids
    ids = [o.record.get("transition_id") or o.record["activation_id"] for o in outs1]
    assert len(set(ids)) == len(ids)
    for o in outs1:
        if o.topic == TRANSITIONS:
            r = o.record
            tid = r["transition_id"]
            assert tid.startswith(ev["event_id"]) and r["journey"] in tid
            assert r["kind"] in tid and str(r["to"]) in tid
    third = new_profile("p1")  # the same event through another source: other ids
    record_event(third, ev)
    outs3 = advance(third, {"j": {1: j}}, {"j": j}, ev, set(), T0, "elsewhere", "elsewhere")
    assert not {o.record.get("transition_id") for o in outs3} & set(ids)


def test_rule_10_wakeup_transition_ids_name_the_wakeup():
    j = journey(stage("s", wait("w", duration=HOUR, next="i"), idle("i")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    seq = st(p)["seq"]
    q = copy.deepcopy(p)
    outs = wake(p, [j], "j", seq, T0 + HOUR)
    assert outs == wake(q, [j], "j", seq, T0 + HOUR)
    assert all(o.record["transition_id"].startswith(f"wakeup:p1:j:{seq}") for o in outs)
    assert all(o.record["caused_by"] == f"wakeup:p1:j:{seq}" for o in outs)


def test_rule_10_transition_ids_are_unique_within_an_input():
    # Two decisions both taking "else" on one input: two transitions, two ids.
    j = journey(stage("s",
                      Step("d1", "decision", otherwise="d2",
                           branches=(Branch("b", "d2", condition=seg("b")),)),
                      Step("d2", "decision", otherwise="a1",
                           branches=(Branch("b", "a1", condition=seg("b")),)),
                      Step("a1", "activation", destination="email", next="a2"),
                      Step("a2", "activation", destination="email", next="w"),
                      idle("w")))
    p = new_profile("p1")
    outs = send(p, [j], event("start", T0))
    assert moves(outs).count(("branch_taken", "d1", "else")) == 1
    assert moves(outs).count(("branch_taken", "d2", "else")) == 1
    assert kinds(outs).count("activation") == 2
    ids = [o.record["transition_id"] for o in outs if o.topic == TRANSITIONS]
    assert len(set(ids)) == len(ids) == 11
    acts = [o.record["activation_id"] for o in outs if o.topic == ACTIVATIONS]
    assert len(set(acts)) == len(acts) == 2


# ---------------------------------------------------------------- rule 11: sparse state


def cell(first, last_reached=None, last_left=None):
    """A sparse cell: first reached, latest reached (default: the first), latest stay left."""
    return {"first": first, "last_reached": first if last_reached is None else last_reached,
            "last_left": last_left}


def test_rule_11_sparse_state_keeps_first_reached_last_reached_and_last_left_per_key():
    j = journey(stage("s1", wait("w1", duration=HOUR, next="d"),
                      Step("d", "decision", otherwise="w2",
                           branches=(Branch("vip", "w2", condition=seg("vip")),)),
                      idle("w2"), milestone=seg("m")),
                stage("s2", Step("ab", "ab_test", branches=(Branch("a", "w3", weight=100),
                                                           Branch("b", "w3", weight=0))),
                      idle("w3")),
                reentry="always", goal=seg("g"))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    assert sparse(p) == {"journey": cell(T0), "stage:s1": cell(T0), "step:w1": cell(T0)}
    wake(p, [j], "j", st(p)["seq"], T0 + HOUR)
    assert sparse(p)["step:w1"] == cell(T0, last_left=T0 + HOUR)
    assert sparse(p)["step:d"] == cell(T0 + HOUR, last_left=T0 + HOUR)
    assert sparse(p)["step:w2"] == cell(T0 + HOUR)
    t2 = T0 + 2 * HOUR
    send(p, [j], event("view", t2), segments={"m"})
    assert sparse(p)["milestone:s1"] == cell(t2)
    assert sparse(p)["stage:s1"] == cell(T0, last_left=t2)
    assert sparse(p)["stage:s2"] == cell(t2)
    t3 = T0 + 3 * HOUR
    send(p, [j], event("view", t3), segments={"g"})
    s = sparse(p)
    assert s["goal"] == cell(t3)
    assert s["journey"] == cell(T0, last_left=t3)
    assert s["stage:s2"]["last_left"] == t3 and s["step:w3"]["last_left"] == t3
    assert st(p)["branches"] == {"1": {"d": "else", "ab": "a"}}
    # A second run keeps the first times (first reached); reaching a key again moves its
    # latest time, and a stay begun again is open (no last-left time) until it is left.
    t4, t5, t6 = T0 + 4 * HOUR, T0 + 5 * HOUR, T0 + 6 * HOUR
    send(p, [j], event("start", t4))
    assert sparse(p)["journey"] == cell(T0, t4)
    assert sparse(p)["stage:s1"] == cell(T0, t4) and sparse(p)["step:w1"] == cell(T0, t4)
    assert sparse(p)["stage:s2"] == cell(t2, last_left=t3)  # not in it in this run (yet)
    send(p, [j], event("view", t5), segments={"m"})
    assert sparse(p)["milestone:s1"] == cell(t2, t5)
    assert sparse(p)["stage:s1"] == cell(T0, t4, t5)  # this run's stay: t4 to t5
    send(p, [j], event("view", t6), segments={"g"})
    assert sparse(p)["journey"] == cell(T0, t4, t6)
    assert sparse(p)["stage:s2"] == cell(t2, t5, t6)
    assert sparse(p)["goal"] == cell(t3, t6)


def test_rule_11_a_jump_back_into_the_same_stage_begins_a_new_stay():
    j = journey(stage("s", wait("w", duration=HOUR, next="back"), Step("back", "jump",
                                                                    to_stage="s")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    wake(p, [j], "j", st(p)["seq"], T0 + HOUR)
    assert st(p)["stage"] == "s" and st(p)["step"] == "w"
    assert sparse(p)["stage:s"] == cell(T0, T0 + HOUR)  # in it: open, since T0 + 1h
    assert sparse(p)["step:w"] == cell(T0, T0 + HOUR)


def test_rule_11_sparse_state_records_exits():
    j = journey(stage("s", idle(), exits=(seg("a"), seg("b"))), reentry="always",
                exits=(seg("x"),))
    p = new_profile("p1")
    send(p, [j], event("start", T0))
    send(p, [j], event("view", T0 + 1), segments={"b"})
    assert sparse(p)["exit:s:1"] == cell(T0 + 1)
    assert "exit:s:0" not in sparse(p)
    send(p, [j], event("start", T0 + 2))
    send(p, [j], event("view", T0 + 3), segments={"x"})
    assert sparse(p)["exit:journey:0"] == cell(T0 + 3)
    assert sparse(p)["journey"]["last_left"] == T0 + 3


def test_rule_11_a_journey_exit_also_records_the_stage_it_left_from():
    later = parse_condition({"event.name": {"eq": "later"}})
    j = journey(stage("s1", idle("i1"), entry=later), stage("s2", idle("i2")),
                reentry="always", exits=(seg("x"), seg("y")))
    p = new_profile("p1")
    send(p, [j], event("start", T0))  # s1 has entry criteria that do not match: no stage
    assert st(p)["stage"] is None
    send(p, [j], event("view", T0 + 1), segments={"y"})
    assert sparse(p)["exit:journey:1"] == cell(T0 + 1)
    assert not [k for k in sparse(p) if "@" in k]  # it was in no stage
    send(p, [j], event("start", T0 + 2))  # enters again, and then s1
    send(p, [j], event("later", T0 + 3))
    send(p, [j], event("view", T0 + 4), segments={"y"})
    assert sparse(p)["exit:journey:1@s1"] == cell(T0 + 4)
    assert sparse(p)["exit:journey:1"] == cell(T0 + 1, T0 + 4)
    assert sparse(p)["stage:s1"] == cell(T0 + 3, last_left=T0 + 4)
    send(p, [j], event("start", T0 + 5))
    send(p, [j], event("later", T0 + 6))
    send(p, [j], event("view", T0 + 7), segments={"x", "y"})  # the first exit wins
    assert sparse(p)["exit:journey:0@s1"] == cell(T0 + 7)
    assert sparse(p)["exit:journey:1@s1"] == cell(T0 + 4)
    assert not [k for k in sparse(p) if k.startswith("exit:s")]  # no stage exit


def test_rule_11_sparse_state_and_branches_are_kept_per_version():
    def ab(version, weight_a):
        return journey(stage("s", Step("ab", "ab_test", branches=(
            Branch("a", "w", weight=weight_a), Branch("b", "w", weight=100 - weight_a))),
            idle("w")), version=version, reentry="always", goal=seg("g"))
    v1, v2 = ab(1, 100), ab(2, 0)
    versions = {"j": {1: v1, 2: v2}}
    p = new_profile("p1")
    send(p, [v1], event("start", T0), versions=versions)
    send(p, [v2], event("view", T0 + 1), segments={"g"}, versions=versions)
    send(p, [v2], event("start", T0 + 2), versions=versions)
    assert st(p)["branches"] == {"1": {"ab": "a"}, "2": {"ab": "b"}}
    assert sparse(p, version=1)["journey"] == cell(T0, last_left=T0 + 1)
    assert sparse(p, version=2)["journey"] == cell(T0 + 2)
    assert "goal" in sparse(p, version=1) and "goal" not in sparse(p, version=2)


# ---------------------------------------------------------------- rule 12: merges


def test_rule_12_a_merge_carries_over_journeys_only_the_visitor_was_in():
    j = journey(stage("s1", idle("i1")), stage("s2", wait("w", duration=HOUR, next="i2"),
                                              idle("i2"), entry=seg("deep")))
    k = journey(stage("t", wait("wk", duration=HOUR, next="ik"), idle("ik")), jid="k",
                entry=parse_condition({"event.name": {"eq": "go_k"}}))
    member, visitor = new_profile("m1"), new_profile("v1")
    send(member, [j, k], event("start", T0))
    send(visitor, [j, k], event("start", T0 + 1), segments={"deep"})
    send(visitor, [j, k], event("go_k", T0 + 2))
    mine = copy.deepcopy(st(member))
    theirs = copy.deepcopy(st(visitor, "k"))
    fold_visitor(member, visitor)
    assert st(member) == mine and st(member)["stage"] == "s1"  # the member keeps its own
    assert st(member, "k") == theirs and st(member, "k")["step"] == "wk"
    outs = wake(member, [j, k], "k", theirs["seq"], T0 + 2 + HOUR)  # the visitor's wake-up
    assert moves(outs) == [("entered_step", "wk", "ik")]
    assert all(o.key == "m1" for o in outs)


# ---------------------------------------------------------------- rule 13: segments first


def test_rule_13_journeys_see_the_memberships_the_same_event_produced():
    defs = DefinitionSet(segments=(
        Segment("buyers", parse_condition({"count.purchase": {"gte": 1}})),))
    j = journey(stage("s", idle()), entry=seg("buyers"), jid="after_purchase")
    p = new_profile("p1")
    ev = event("purchase", T0)
    record_event(p, ev)
    members, _ = judge_segments(p, defs, T0, ev["event_id"], ev["event_id"])
    outs = advance(p, {j.id: {1: j}}, {j.id: j}, ev, members, T0, ev["event_id"],
                   ev["event_id"])
    assert moves(outs)[0] == ("entered_journey", None, "after_purchase")


def test_rule_13_the_machine_judges_on_the_segments_given_not_the_stored_ones():
    j = journey(stage("s", idle()), entry=seg("buyers"))
    p = new_profile("p1")
    p["segments"] = ["buyers"]  # stored before this event; this event's judgement says no
    assert send(p, [j], event("view", T0), segments=set()) == []
    p["segments"] = []
    assert "entered_journey" in kinds(send(p, [j], event("view", T0 + 1), segments={"buyers"}))


# ---------------------------------------------------------------- termination


def test_rule_8_a_cycle_through_a_days_wait_that_goes_straight_on_still_ends():
    # Validation lets any wait break a cycle; today being allowed must not loop forever.
    j = journey(stage("s", wait("w", days=(WEEKDAY0,), next="m"), Step("m", "merge", next="w")))
    p = new_profile("p1")
    with time_limit(1.0):
        outs = send(p, [j], event("start", T0 + HOUR))
    assert len(outs) < 10
    assert st(p)["step"] == "w" and st(p)["due"] > T0 + HOUR  # it really waits now
    when = datetime.fromtimestamp(st(p)["due"] / 1000, timezone.utc)
    assert when.weekday() == WEEKDAY0 and (when.hour, when.minute) == (0, 0)


def test_rule_8_a_cycle_through_an_until_that_has_passed_still_ends():
    j = journey(stage("s", wait("w", until=T0 - DAY, next="a"),
                      Step("a", "activation", destination="email", next="w")))
    p = new_profile("p1")
    with time_limit(1.0):
        outs = send(p, [j], event("start", T0))
    assert len([o for o in outs if o.topic == ACTIVATIONS]) == 1
    assert st(p)["step"] == "w" and st(p)["status"] == "active"
