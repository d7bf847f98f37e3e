"""Batch audiences: a segment defined by one read-only SELECT (`sql:`) instead of a condition.
The definitions accept only one read-only SELECT; the sidecar computes each run's set and sends
entered = new EXCEPT old and left = old EXCEPT new (everything it may have said since the last
complete run when a run was cut short); the profile agent applies each audience input once, in
order with the profile's events, behind merge barriers, and keeps the membership when it judges
its other segments. Pure Python and an in-memory DuckDB: no Kafka."""
import pickle

import pytest

from sidecar import sandbox
from sidecar.audiences import AudienceRun, complete, compute, prepare, records
from state.definitions import (MAX_SQL, DefinitionError, Segment, from_records,
                               load_definitions, to_records)
from state.judging import judge_segments
from state.processing import step
from state.profile import new_profile, record_event

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MEMBER, VISITOR = "m1", "v1"
SQL = "SELECT profile_id FROM events WHERE name = 'purchase'"

# ---------------------------------------------------------------- definitions


def errors_of(segment: dict, **doc) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        load_definitions({"segments": [{"id": "ok", "sql": SQL}, segment], **doc})
    return info.value.errors


def test_a_segment_with_sql_loads_without_a_condition():
    (vip,) = load_definitions({"segments": [{"id": "vip", "sql": SQL,
                                             "description": "bought"}]}).segments
    assert vip == Segment("vip", None, "bought", sql=SQL)


def test_a_sql_segment_travels_as_a_record_and_comes_back_equal():
    defs = load_definitions({"segments": [{"id": "vip", "sql": SQL, "description": "bought"}]})
    assert to_records(defs) == [("segment:vip", {"id": "vip", "sql": SQL,
                                                 "description": "bought"})]
    assert from_records(to_records(defs)) == defs


@pytest.mark.parametrize("sql, problem", [
    ("DROP TABLE events", "only a SELECT is accepted, got DROP"),
    ("INSERT INTO events (profile_id) VALUES ('x')", "only a SELECT is accepted, got INSERT"),
    ("COPY events TO 'out.csv'", "only a SELECT is accepted, got COPY"),
    ("PRAGMA table_info('events')", "only a SELECT is accepted, got PRAGMA"),
    (f"{SQL}; {SQL}", "expected one statement, got 2"),
    ("-- nothing but a comment", "expected one statement, got 0"),
    ("", "expected the text of a SELECT"),
    ("   \n", "expected the text of a SELECT"),
    (42, "expected the text of a SELECT"),
    (None, "expected the text of a SELECT"),
    (SQL + " " * MAX_SQL, f"longer than {MAX_SQL} characters"),
])
def test_sql_that_is_not_one_read_only_select_is_rejected_at_its_path(sql, problem):
    assert errors_of({"id": "bad", "sql": sql}) == [("segments[1].sql", problem)]


def test_sql_that_does_not_parse_is_rejected_with_the_parsers_message():
    ((path, problem),) = errors_of({"id": "bad", "sql": "SELEC profile_id FROM events"})
    assert path == "segments[1].sql"
    assert problem.startswith("not valid SQL: ") and "SELEC" in problem


def test_a_segment_with_both_condition_and_sql_is_rejected_as_a_whole():
    assert errors_of({"id": "bad", "sql": SQL, "condition": {"count.view": {"gte": 1}}}) == \
        [("segments[1]", "a segment has a condition or sql, not both")]


def test_deliveries_segments_and_journeys_may_reference_a_sql_segment():
    defs = load_definitions({
        "segments": [
            {"id": "vip_viewers", "condition": {"all": [{"segment": "vip"},
                                                        {"count.view": {"gte": 1}}]}},
            {"id": "vip", "sql": SQL},
        ],
        "deliveries": [{"id": "thanks", "segment": "vip",
                        "trigger": {"event.name": {"eq": "view"}}}],
        "journeys": [{"id": "j", "entry": {"segment": "vip"},
                      "stages": [{"id": "s", "steps": [{"id": "bye", "kind": "end"}]}]}],
    })
    assert [s.id for s in defs.segments] == ["vip", "vip_viewers"]  # dependency order
    assert defs.deliveries[0].segment == "vip"


# ---------------------------------------------------------------- the profile agent


class PickleWire:
    """Any encoding will do for the domain; the profile agent only needs it to round-trip."""
    decode_input = decode_profile = staticmethod(pickle.loads)
    encode_input = encode_profile = staticmethod(pickle.dumps)
    generation = "cjo"  # the instance part of output ids (the reference model's default)

    @staticmethod
    def encode_output(topic, record):
        return pickle.dumps(record)


WIRE = PickleWire()
DEFS = load_definitions({
    "segments": [
        {"id": "vip", "sql": SQL},
        {"id": "gold", "sql": "SELECT profile_id FROM events WHERE name = 'gold'"},
        {"id": "vip_viewers", "condition": {"all": [{"segment": "vip"},
                                                    {"count.view": {"gte": 1}}]}},
    ],
    "journeys": [{"id": "welcome_vip", "entry": {"segment": "vip"}, "stages": [
        {"id": "hello", "steps": [{"id": "rest", "kind": "wait", "duration": "300d",
                                   "next": "bye"},
                                  {"id": "bye", "kind": "end"}]}]}],
})
NO_JOURNEYS = load_definitions({"segments": [{"id": "vip", "sql": SQL}]})


def audience_input(member=True, run=1, segment="vip", pid=MEMBER, t=T0) -> dict:
    """The record the sidecar sends for one change of one run (`sidecar.audiences.records`)."""
    entered, left = ([pid], []) if member else ([], [pid])
    ((key, record),) = records(AudienceRun(segment, run, 1, entered, left), t)
    assert key == pid
    return record


def event_input(offset, name="view", t=T0, partition=3) -> dict:
    ev = {"event_id": f"{name}@{offset}", "name": name, "visitor_id": None,
          "user_id": MEMBER, "time": t, "request_id": None, "values": {}}
    return {"kind": "event", "profile_id": MEMBER, "source_partition": partition,
            "source_offset": offset, "event": ev, "visitor_id": None,
            "member_id": None, "merge_id": None, "state": None}


class Agent:
    """One profile's table entry, fed records of its profile-inputs partition in order."""

    def __init__(self, defs=DEFS):
        self.defs, self.profile, self.offset = defs, None, 0

    def feed(self, record: dict) -> list[dict]:
        self.profile, sends = step(self.profile, record, self.offset, None, self.defs, WIRE)
        self.offset += 1
        return sends

    def outbox(self) -> list[dict]:
        return [r for entry in self.profile["outbox"] for r in entry["records"]]


def changes(sends) -> list[tuple[str, str]]:
    made = [pickle.loads(s["value"]) for s in sends if s["topic"] == "segment-changes"]
    return [(r["segment"], r["change"]) for r in made]


def test_entering_an_audience_adds_the_segment_and_says_entered_once():
    agent = Agent(NO_JOURNEYS)
    sends = agent.feed(audience_input(member=True, run=1, t=T0 + 5))
    assert agent.profile["segments"] == ["vip"]
    assert [(s["topic"], s["key"], pickle.loads(s["value"])) for s in sends] == [
        ("segment-changes", MEMBER, {"change_id": f"cjo/{MEMBER}/audience:vip:1/segment/vip/"
                                                  "entered",
                                     "profile_id": MEMBER, "segment": "vip",
                                     "change": "entered", "time": T0 + 5,
                                     "caused_by": f"audience:vip:1:{MEMBER}"})]
    assert agent.profile["positions"] == {"audience:vip": 1}


def test_leaving_an_audience_removes_the_segment_and_says_left():
    agent = Agent(NO_JOURNEYS)
    agent.feed(audience_input(member=True, run=1))
    sends = agent.feed(audience_input(member=False, run=2))
    assert changes(sends) == [("vip", "left")]
    assert agent.profile["segments"] == []


@pytest.mark.parametrize("member", [True, False])
def test_a_membership_already_held_changes_nothing(member):
    agent = Agent(NO_JOURNEYS)
    if member:
        agent.feed(audience_input(member=True, run=1))
    held = list(agent.profile["segments"]) if agent.profile else []
    assert agent.feed(audience_input(member=member, run=2)) == []
    assert agent.profile["segments"] == held
    assert agent.profile["positions"] == {"audience:vip": 2}


@pytest.mark.parametrize("run", [1, 2])  # an older run, the same run
def test_a_run_not_newer_than_the_last_applied_is_skipped(run):
    agent = Agent(NO_JOURNEYS)
    record = audience_input(member=True, run=2)
    entered = agent.feed(record)
    assert agent.feed(audience_input(member=False, run=run)) == []  # sent again by the sidecar
    assert agent.profile["segments"] == ["vip"]
    assert agent.profile["positions"] == {"audience:vip": 2}
    # Read again at its own offset (a restart before the commit): what it made goes again.
    agent.profile, again = step(agent.profile, record, 0, None, agent.defs, WIRE)
    assert again == agent.outbox() == entered


def test_each_audience_has_its_own_run_position():
    agent = Agent()
    agent.feed(audience_input(segment="vip", run=5))
    sends = agent.feed(audience_input(segment="gold", run=1))
    assert changes(sends) == [("gold", "entered")]
    assert agent.profile["positions"] == {"audience:vip": 5, "audience:gold": 1}


def test_a_journey_entered_on_the_audience_starts_with_the_audience_input():
    agent = Agent()
    sends = agent.feed(audience_input(run=1, t=T0 + 5))
    transitions = [pickle.loads(s["value"]) for s in sends
                   if s["topic"] == "journey-transitions"]
    assert ("welcome_vip", "entered_journey", T0 + 5) in \
        [(t["journey"], t["kind"], t["time"]) for t in transitions]
    state = agent.profile["journeys"]["welcome_vip"]
    assert (state["status"], state["stage"], state["step"]) == ("active", "hello", "rest")


def test_an_audience_input_behind_a_merge_barrier_waits_and_is_applied_in_order():
    agent = Agent()
    merge = f"cjo/{VISITOR}>{MEMBER}@2:10"
    identify = {**event_input(10, "identify", partition=2), "kind": "identify",
                "visitor_id": VISITOR, "merge_id": merge}
    agent.feed(identify)
    assert agent.feed(audience_input(run=1, t=T0 + 1)) == []
    assert agent.feed(event_input(11, "view", t=T0 + 2)) == []
    assert agent.profile["segments"] == [] and len(agent.profile["buffered"]) == 3
    sends = agent.feed({"kind": "merge_in", "profile_id": MEMBER, "source_partition": 2,
                        "source_offset": 10, "event": None, "visitor_id": VISITOR,
                        "member_id": MEMBER, "merge_id": merge, "state": None})
    # The view came after the audience input: it sees vip, so vip_viewers is entered.
    assert changes(sends) == [("vip", "entered"), ("vip_viewers", "entered")]
    assert agent.profile["buffered"] == []


def test_judging_segments_on_a_later_event_keeps_the_audience_and_others_see_it():
    agent = Agent()
    agent.feed(audience_input(run=1))
    sends = agent.feed(event_input(7, "view", t=T0 + 1))
    assert changes(sends) == [("vip_viewers", "entered")]
    assert agent.profile["segments"] == ["vip", "vip_viewers"]
    assert changes(agent.feed(event_input(8, "view", t=T0 + 2))) == []
    assert agent.profile["segments"] == ["vip", "vip_viewers"]


def test_without_the_sidecars_word_judging_never_enters_an_audience():
    profile = new_profile(MEMBER)
    record_event(profile, {"event_id": "e", "name": "purchase", "time": T0, "values": {},
                           "request_id": None})
    members, outputs = judge_segments(profile, DEFS, T0, "3:7", "e")
    assert members == set() and outputs == []


# ---------------------------------------------------------------- the sidecar's runs


BUYERS = Segment("buyers", None, sql=SQL)


@pytest.fixture
def db():
    db = sandbox.connect()  # the locked connection the sidecar runs audiences on
    db.execute("CREATE TABLE events (profile_id VARCHAR, name VARCHAR)")
    prepare(db)
    yield db
    db.close()


def buyers(db, *pids):
    """The events table now holds one purchase of each of `pids` (repeats and None allowed)."""
    db.execute("DELETE FROM events")
    for pid in pids:
        db.execute("INSERT INTO events VALUES (?, 'purchase')", [pid])
    db.execute("INSERT INTO events VALUES ('browser', 'view')")


def changed(run: AudienceRun) -> tuple[list[str], list[str]]:
    return run.entered, run.left


def test_the_first_run_enters_every_member(db):
    buyers(db, "b", "a")
    run = compute(db, BUYERS)
    assert (run.segment, run.run, run.members) == ("buyers", 1, 2)
    assert changed(run) == (["a", "b"], [])


def test_records_are_one_audience_input_per_change_keyed_by_profile():
    run = AudienceRun("buyers", 3, 2, ["a"], ["z"])
    assert [(key, r["kind"], r["audience"], r["member"], r["run"], r["time"])
            for key, r in records(run, T0)] == [
        ("a", "audience", "buyers", True, 3, T0), ("z", "audience", "buyers", False, 3, T0)]


def test_after_a_complete_run_the_next_sends_only_the_differences(db):
    buyers(db, "a", "b")
    complete(db, compute(db, BUYERS), T0)
    buyers(db, "b", "c")
    run = compute(db, BUYERS)
    assert (run.run, run.members) == (2, 2)
    assert changed(run) == (["c"], ["a"])
    complete(db, run, T0 + 1)
    assert changed(compute(db, BUYERS)) == ([], [])


def test_after_a_broken_run_everyone_is_told_again(db):
    buyers(db, "a", "b")
    complete(db, compute(db, BUYERS), T0)
    buyers(db, "b", "c")
    compute(db, BUYERS)  # computed, but the sidecar died before every record was acknowledged
    buyers(db, "b", "d")
    run = compute(db, BUYERS)
    assert run.run == 3
    # a: of the last complete set; c: of the broken run only.
    assert changed(run) == (["b", "d"], ["a", "c"])


def test_after_two_broken_runs_everyone_either_may_have_entered_is_told_to_leave(db):
    buyers(db, "a")
    complete(db, compute(db, BUYERS), T0)
    buyers(db, "b")
    compute(db, BUYERS)
    buyers(db, "c")
    compute(db, BUYERS)
    buyers(db, "d")
    run = compute(db, BUYERS)
    assert run.run == 4
    assert changed(run) == (["d"], ["a", "b", "c"])
    complete(db, run, T0 + 1)
    assert changed(compute(db, BUYERS)) == ([], [])


def test_run_numbers_grow(db):
    buyers(db, "a")
    numbers = []
    for _ in range(3):
        run = compute(db, BUYERS)
        complete(db, run, T0)
        numbers.append(run.run)
    assert numbers == [1, 2, 3]


def test_duplicate_and_null_profile_ids_count_once_and_not_at_all(db):
    buyers(db, "a", "a", None, "b", None)
    run = compute(db, BUYERS)
    assert run.members == 2 and changed(run) == (["a", "b"], [])


@pytest.mark.parametrize("sql", [
    SQL + ";",
    SQL + " ;\n",
    SQL + " -- buyers; all of them",
    SQL + "\n-- a last line of comment\n",
    SQL + "; -- buyers",
])
def test_a_trailing_semicolon_or_comment_works(db, sql):
    load_definitions({"segments": [{"id": "buyers", "sql": sql}]})  # accepted on apply
    buyers(db, "a")
    assert changed(compute(db, Segment("buyers", None, sql=sql))) == (["a"], [])
