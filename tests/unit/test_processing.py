"""How the profile agent applies one profile-inputs record (`state.processing.step`): nothing
is applied twice, nothing made is lost before it is committed, outputs carry deterministic ids,
and merges happen before what follows them. Pure Python: the Wire is JSON, written here."""
import base64
import copy
import json


from state.definitions import choose_variant, load_definitions
from state.durations import DAY, HOUR, MINUTE
from state.processing import PROFILE_INPUTS, STATS, reapply, step
from state.profile import new_profile, record_event

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MEMBER, VISITOR = "m1", "v1"


# ---------------------------------------------------------------- a JSON wire


def _default(value):
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    raise TypeError(f"not JSON: {value!r}")


def _hook(obj: dict):
    return base64.b64decode(obj["__bytes__"]) if set(obj) == {"__bytes__"} else obj


def dumps(value) -> bytes:
    return json.dumps(value, default=_default, sort_keys=True).encode()


def loads(data: bytes):
    return json.loads(data, object_hook=_hook)


class JsonWire:
    generation = "cjo"  # the instance part of output ids (the reference model's default)

    def encode_input(self, record: dict) -> bytes:
        return dumps(record)

    def decode_input(self, data: bytes) -> dict:
        return loads(data)

    def encode_profile(self, profile: dict) -> bytes:
        return dumps(profile)

    def decode_profile(self, data: bytes) -> dict:
        return loads(data)

    def encode_output(self, topic: str, record: dict) -> bytes:
        return dumps(record)


WIRE = JsonWire()

# ---------------------------------------------------------------- definitions

DEFS = load_definitions({
    "segments": [
        {"id": "viewer", "condition": {"count.view": {"gte": 1}}},
        {"id": "buyer", "condition": {"count.purchase": {"gte": 1}}},
        {"id": "newbie", "condition": {"count.*": {"lt": 2}}},
    ],
    "deliveries": [
        {"id": "banner", "segment": "viewer", "trigger": {"event.name": {"eq": "view"}},
         "variants": [{"id": "a", "weight": 50, "payload": {"banner": "spring"}},
                      {"id": "b", "weight": 50, "payload": {"banner": "summer"}}]},
    ],
})
NO_DEFS = load_definitions({})


def limited(**limits):
    """One segment everybody with an event is in, and a delivery on every view with `limits`."""
    return load_definitions({
        "segments": [{"id": "anyone", "condition": {"count.*": {"gte": 1}}}],
        "deliveries": [{"id": "ping", "segment": "anyone",
                        "trigger": {"event.name": {"eq": "view"}}, "limits": limits}],
    })


# ---------------------------------------------------------------- records


def event(name="view", t=T0, event_id=None, values=None, visitor=None, user=MEMBER,
          request_id=None) -> dict:
    return {"event_id": event_id or f"{name}@{t}", "name": name, "visitor_id": visitor,
            "user_id": user, "time": t, "request_id": request_id, "values": values or {}}


def event_input(pid, partition, offset, kind="event", **fields) -> dict:
    """A profile-inputs record as the identity step makes it for the event at `partition:offset`
    of the events topic."""
    ev = event(**fields)
    return {"kind": kind, "profile_id": pid, "source_partition": partition,
            "source_offset": offset, "event": ev, "visitor_id": None,
            "member_id": None, "merge_id": None, "state": None}


def merge_id(partition=2, offset=10, visitor=VISITOR, member=MEMBER) -> str:
    return f"{WIRE.generation}/{visitor}>{member}@{partition}:{offset}"


def made_by(cause: str, pid: str = MEMBER) -> str:
    """What the ids of an input's outputs for `pid` start with (state.output_ids)."""
    return f"{WIRE.generation}/{pid}/{cause}"


def identify_input(partition=2, offset=10, visitor=VISITOR, member=MEMBER, t=T0) -> dict:
    record = event_input(member, partition, offset, kind="identify", name="identify", t=t,
                         visitor=visitor, user=member)
    return {**record, "visitor_id": visitor,
            "merge_id": merge_id(partition, offset, visitor, member)}


def merge_out_input(partition=2, offset=10, visitor=VISITOR, member=MEMBER) -> dict:
    return {"kind": "merge_out", "profile_id": visitor, "source_partition": partition,
            "source_offset": offset, "event": None, "visitor_id": visitor,
            "member_id": member, "merge_id": merge_id(partition, offset, visitor, member),
            "state": None}


def visitor_state(*events, pid=VISITOR) -> dict:
    profile = new_profile(pid)
    for ev in events:
        record_event(profile, ev)
    return profile


def merge_in_input(state: dict | None, partition=2, offset=10, visitor=VISITOR,
                   member=MEMBER) -> dict:
    return {"kind": "merge_in", "profile_id": member, "source_partition": partition,
            "source_offset": offset, "event": None, "visitor_id": visitor,
            "member_id": member, "merge_id": merge_id(partition, offset, visitor, member),
            "state": None if state is None else WIRE.encode_profile(state)}


# ---------------------------------------------------------------- driving one profile


class Agent:
    """One profile's table entry, fed records of its profile-inputs partition in order."""

    def __init__(self, defs=DEFS):
        self.defs = defs
        self.profile = None
        self.next_offset = 0

    def feed(self, record: dict, committed: int | None = None) -> list[dict]:
        offset = self.next_offset
        self.next_offset += 1
        self.profile, sends = step(self.profile, record, offset, committed, self.defs, WIRE)
        return sends

    def redeliver(self, record: dict, offset: int, committed: int | None = None) -> list[dict]:
        """`record` read again at the offset it had (a restart before the commit)."""
        self.profile, sends = step(self.profile, record, offset, committed, self.defs, WIRE)
        return sends

    def stats(self) -> dict:
        return copy.deepcopy({k: self.profile[k] for k in STATS})

    def outbox_records(self) -> list[dict]:
        return [r for entry in self.profile["outbox"] for r in entry["records"]]


def decoded(sends: list[dict]) -> list[tuple[str, str, dict]]:
    return [(s["topic"], s["key"], loads(s["value"])) for s in sends]


def ids(sends: list[dict]) -> list[str]:
    """The deterministic id of every output (segment change or activation)."""
    out = []
    for topic, _, record in decoded(sends):
        out.append(record["change_id"] if topic == "segment-changes" else
                   record["activation_id"] if topic == "activations" else
                   f"{topic}:{record['kind']}")
    return out


def activations(sends: list[dict]) -> list[dict]:
    return [r for topic, _, r in decoded(sends) if topic == "activations"]


# ---------------------------------------------------------------- applying events


def test_an_event_updates_the_profile_and_reports_the_segments_it_entered():
    agent = Agent()
    sends = agent.feed(event_input(MEMBER, 3, 7, name="purchase", event_id="e-7"))
    assert agent.profile["counts"] == {"purchase": 1}
    assert agent.profile["segments"] == ["buyer", "newbie"]
    assert decoded(sends) == [
        ("segment-changes", MEMBER, {"change_id": made_by("event:e-7") + "/segment/buyer/entered",
                                     "profile_id": MEMBER, "segment": "buyer",
                                     "change": "entered", "time": T0, "caused_by": "e-7"}),
        ("segment-changes", MEMBER, {"change_id": made_by("event:e-7") + "/segment/newbie/entered",
                                     "profile_id": MEMBER, "segment": "newbie",
                                     "change": "entered", "time": T0, "caused_by": "e-7"}),
    ]


def test_leaving_a_segment_has_an_id_from_its_cause():
    agent = Agent()
    agent.feed(event_input(MEMBER, 3, 7, name="purchase"))
    sends = agent.feed(event_input(MEMBER, 3, 8, name="purchase", t=T0 + 1, event_id="e-8"))
    assert ids(sends) == [made_by("event:e-8") + "/segment/newbie/left"]
    assert decoded(sends)[0][2]["caused_by"] == "e-8"
    assert agent.profile["segments"] == ["buyer"]


def test_an_input_read_again_at_its_offset_changes_nothing_and_resends_what_it_made():
    agent = Agent()
    record = event_input(MEMBER, 3, 7)
    first = agent.feed(record)
    agent.feed(event_input(MEMBER, 3, 8, t=T0 + 1))
    stats = agent.stats()
    again = agent.redeliver(record, 0)
    assert agent.stats() == stats
    assert again == first and again  # the same bytes: consumers drop the copies by id


def test_the_same_source_position_at_another_offset_changes_nothing_and_sends_nothing():
    """The identity step forwarded the event twice (it restarted before its commit): what the
    first copy made was flushed before the profile agent committed past it, or the first copy
    is read again itself."""
    agent = Agent()
    record = event_input(MEMBER, 3, 7)
    agent.feed(record)
    stats = agent.stats()
    assert agent.feed(record) == []
    assert agent.stats() == stats


def test_an_older_offset_of_the_same_source_partition_is_skipped():
    agent = Agent()
    agent.feed(event_input(MEMBER, 3, 7, t=T0))
    agent.feed(event_input(MEMBER, 3, 8, t=T0 + 1))
    stats = agent.stats()
    assert agent.feed(event_input(MEMBER, 3, 5, t=T0 + 2)) == []
    assert agent.stats() == stats


def test_a_newer_offset_of_the_same_source_partition_is_applied():
    agent = Agent()
    agent.feed(event_input(MEMBER, 3, 7))
    sends = agent.feed(event_input(MEMBER, 3, 8, t=T0 + 1))
    assert agent.profile["counts"] == {"view": 2}
    cause = made_by(f"event:view@{T0 + 1}")
    assert ids(sends) == [f"{cause}/segment/newbie/left", f"{cause}/delivery/banner"]
    assert agent.profile["positions"] == {"3": 8}


def test_positions_are_kept_per_source_partition():
    agent = Agent()
    agent.feed(event_input(MEMBER, 3, 7))
    agent.feed(event_input(MEMBER, 1, 2, t=T0 + 1))
    assert agent.profile["counts"] == {"view": 2}
    assert agent.profile["positions"] == {"3": 7, "1": 2}


# ---------------------------------------------------------------- the outbox


def test_outputs_stay_in_the_outbox_with_the_offset_that_made_them():
    agent = Agent(limited())
    sends = agent.feed(event_input(MEMBER, 3, 7))
    assert agent.profile["outbox"] == [{"source": made_by(f"event:view@{T0}"), "offset": 0,
                                        "records": sends}]


def test_an_input_without_outputs_adds_nothing_to_the_outbox():
    agent = Agent(NO_DEFS)
    assert agent.feed(event_input(MEMBER, 3, 7)) == []
    assert agent.profile["outbox"] == []


def test_outbox_entries_are_pruned_once_committed_passes_their_offset():
    agent = Agent(limited())
    for i in range(3):  # outbox entries at offsets 0, 1, 2
        agent.feed(event_input(MEMBER, 3, 7 + i, t=T0 + i))
    agent.feed(event_input(MEMBER, 3, 10, t=T0 + 3), committed=2)
    assert [e["offset"] for e in agent.profile["outbox"]] == [2, 3]


def test_a_redelivery_resends_only_what_is_not_yet_committed():
    agent = Agent(limited())
    first = agent.feed(event_input(MEMBER, 3, 7, t=T0))
    second = agent.feed(event_input(MEMBER, 3, 8, t=T0 + 1))
    again = agent.redeliver(event_input(MEMBER, 3, 8, t=T0 + 1), 1, committed=1)
    assert again == second and first[0] not in again
    assert [e["offset"] for e in agent.profile["outbox"]] == [1]


# ---------------------------------------------------------------- deliveries


def test_an_activation_has_an_id_from_its_cause():
    agent = Agent()
    sends = agent.feed(event_input(MEMBER, 3, 7, event_id="e-7"))
    (activation,) = activations(sends)
    variant = choose_variant(DEFS.deliveries[0], MEMBER)
    assert activation == {"activation_id": made_by("event:e-7") + "/delivery/banner",
                          "delivery": "banner",
                          "variant": variant.id, "profile_id": MEMBER,
                          "payload": variant.payload, "time": T0, "caused_by": "e-7",
                          "destination": "web", "suppressed": None}
    assert decoded(sends)[-1][:2] == ("activations", MEMBER)


def test_a_profile_always_gets_the_same_variant():
    agent = Agent()
    sent = []
    for i in range(5):
        sent += activations(agent.feed(event_input(MEMBER, 3, 7 + i, t=T0 + i)))
    assert len(sent) == 5
    assert {a["variant"] for a in sent} == {choose_variant(DEFS.deliveries[0], MEMBER).id}


def test_a_delivery_stops_at_its_total_limit():
    agent = Agent(limited(total=2))
    fired = [len(activations(agent.feed(event_input(MEMBER, 3, i, t=T0 + i * DAY))))
             for i in range(4)]
    assert fired == [1, 1, 0, 0]
    assert agent.profile["deliveries"]["ping"]["total"] == 2


def test_a_delivery_stops_at_its_daily_limit_and_the_day_resets_it():
    agent = Agent(limited(per_day=2))
    times = [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + DAY, T0 + DAY + HOUR, T0 + DAY + 2 * HOUR]
    fired = [len(activations(agent.feed(event_input(MEMBER, 3, i, t=t))))
             for i, t in enumerate(times)]
    assert fired == [1, 1, 0, 1, 1, 0]


def test_a_delivery_fires_only_on_its_trigger():
    agent = Agent()
    agent.feed(event_input(MEMBER, 3, 7))
    assert activations(agent.feed(event_input(MEMBER, 3, 8, name="purchase", t=T0 + 1))) == []


def test_a_late_event_of_an_earlier_day_does_not_lift_todays_daily_limit():
    agent = Agent(limited(per_day=1))
    sent = []
    for i, t in enumerate([T0 + 10 * HOUR, T0 - 10 * HOUR, T0 + 11 * HOUR]):
        sent += activations(agent.feed(event_input(MEMBER, 3, i, t=t)))
    today = [a for a in sent if a["time"] // DAY == T0 // DAY]
    assert len(today) == 1


# ---------------------------------------------------------------- merges: the member side


def member_with_a_purchase() -> Agent:
    agent = Agent()
    agent.feed(event_input(MEMBER, 5, 1, name="purchase", t=T0 + MINUTE))
    return agent


def test_identify_raises_a_barrier_and_waits():
    agent = member_with_a_purchase()
    stats = agent.stats()
    record = identify_input()
    assert agent.feed(record) == []
    assert agent.profile["pending_merges"] == [merge_id()]
    assert [loads(b) for b in agent.profile["buffered"]] == [record]
    assert agent.stats() == stats


def test_events_after_identify_wait_but_their_positions_are_recorded():
    agent = member_with_a_purchase()
    agent.feed(identify_input())
    stats = agent.stats()
    assert agent.feed(event_input(MEMBER, 2, 11, t=T0 + 3 * MINUTE)) == []
    assert agent.feed(event_input(MEMBER, 5, 2, t=T0 + 4 * MINUTE)) == []
    assert agent.stats() == stats
    assert len(agent.profile["buffered"]) == 3
    assert agent.profile["positions"] == {"5": 2, "2": 11}


def test_a_redelivered_waiting_event_is_not_buffered_twice():
    agent = member_with_a_purchase()
    agent.feed(identify_input())
    agent.feed(event_input(MEMBER, 2, 11))
    agent.feed(event_input(MEMBER, 2, 11))
    assert len(agent.profile["buffered"]) == 2


def test_merge_in_folds_the_visitor_judges_segments_and_releases_the_waiting_inputs():
    agent = member_with_a_purchase()
    agent.feed(identify_input(t=T0 + 2 * MINUTE))
    agent.feed(event_input(MEMBER, 2, 11, name="view", t=T0 + 3 * MINUTE, event_id="e-11"))
    visitor = visitor_state(event("view", t=T0 - HOUR, user=None, visitor=VISITOR))
    sends = agent.feed(merge_in_input(visitor))
    mid, cause = merge_id(), made_by("merge:2:10")
    assert ids(sends) == [
        f"{cause}/segment/viewer/entered",  # the visitor's view, judged as the merge
        f"{cause}/segment/newbie/left",
        made_by("event:e-11") + "/delivery/banner",  # then the waiting view (identify fires
    ]                                                # nothing)
    merge_changes = [r for _, _, r in decoded(sends)[:2]]
    assert {r["caused_by"] for r in merge_changes} == {mid}
    assert {r["time"] for r in merge_changes} == {T0 + MINUTE}  # merged last_seen
    assert agent.profile["counts"] == {"view": 2, "purchase": 1, "identify": 1}
    assert agent.profile["first_seen"] == T0 - HOUR
    assert agent.profile["last_seen"] == T0 + 3 * MINUTE
    assert agent.profile["pending_merges"] == [] and agent.profile["buffered"] == []
    assert agent.profile["merges_done"] == [mid]


def test_the_waiting_inputs_are_applied_in_their_order():
    agent = Agent(NO_DEFS)
    agent.feed(identify_input(t=T0))
    agent.feed(event_input(MEMBER, 2, 11, name="attribute", t=T0, values={"plan": "free"},
                           event_id="a1"))
    agent.feed(event_input(MEMBER, 2, 12, name="attribute", t=T0, values={"plan": "gold"},
                           event_id="a2"))
    agent.feed(merge_in_input(None))
    assert agent.profile["last"]["attribute"] == {"plan": "gold"}
    assert agent.profile["counts"] == {"identify": 1, "attribute": 2}


def test_a_duplicate_merge_in_does_nothing_and_a_redelivered_one_resends():
    agent = member_with_a_purchase()
    agent.feed(identify_input())
    record = merge_in_input(visitor_state(event("view", t=T0, user=None, visitor=VISITOR)))
    offset = agent.next_offset
    first = agent.feed(record)
    stats = agent.stats()
    assert agent.feed(record) == []  # the visitor handed over twice
    assert agent.redeliver(record, offset) == first and first  # read again after a restart
    assert agent.stats() == stats
    assert agent.profile["merges_done"] == [merge_id()]


def test_a_merge_in_before_its_identify_is_applied_at_once():
    agent = member_with_a_purchase()
    sends = agent.feed(merge_in_input(visitor_state(event("view", t=T0, user=None,
                                                          visitor=VISITOR))))
    assert agent.profile["counts"] == {"purchase": 1, "view": 1}
    assert made_by("merge:2:10") + "/segment/viewer/entered" in ids(sends)
    assert agent.profile["pending_merges"] == []


def test_an_identify_after_its_merge_in_is_an_ordinary_event():
    agent = member_with_a_purchase()
    agent.feed(merge_in_input(None))
    agent.feed(identify_input(t=T0 + 2 * MINUTE))
    assert agent.profile["pending_merges"] == [] and agent.profile["buffered"] == []
    assert agent.profile["counts"] == {"purchase": 1, "identify": 1}
    sends = agent.feed(event_input(MEMBER, 2, 11, t=T0 + 3 * MINUTE))
    assert agent.profile["counts"]["view"] == 1 and sends


def test_a_merge_in_without_visitor_state_only_lifts_the_barrier():
    agent = member_with_a_purchase()
    agent.feed(identify_input(t=T0 + 2 * MINUTE))
    sends = agent.feed(merge_in_input(None))
    # Nothing folded, so the merge itself changes no segment; the released identify is an
    # event of its own (a second event: newbie is left).
    assert ids(sends) == [made_by(f"event:identify@{T0 + 2 * MINUTE}") + "/segment/newbie/left"]
    assert agent.profile["counts"] == {"purchase": 1, "identify": 1}
    assert agent.profile["pending_merges"] == [] and agent.profile["buffered"] == []


def test_two_merges_in_a_row_both_complete_before_the_waiting_events():
    agent = Agent(NO_DEFS)
    first = identify_input(2, 10, visitor="v1")
    second = identify_input(4, 20, visitor="v2", t=T0 + 2)
    agent.feed(first)
    agent.feed(event_input(MEMBER, 2, 11, t=T0 + 1))
    agent.feed(second)
    agent.feed(event_input(MEMBER, 4, 21, t=T0 + 3))
    assert agent.profile["pending_merges"] == [first["merge_id"], second["merge_id"]]

    agent.feed(merge_in_input(visitor_state(event("purchase", t=T0 - 2, visitor="v1")),
                              2, 10, visitor="v1"))
    assert agent.profile["counts"] == {"purchase": 1}  # the first visitor only: still waiting
    assert agent.profile["pending_merges"] == [second["merge_id"]]
    assert len(agent.profile["buffered"]) == 4

    agent.feed(merge_in_input(visitor_state(event("purchase", t=T0 - 1, visitor="v2"),
                                            pid="v2"), 4, 20, visitor="v2"))
    assert agent.profile["counts"] == {"purchase": 2, "identify": 2, "view": 2}
    assert agent.profile["pending_merges"] == [] and agent.profile["buffered"] == []
    assert sorted(agent.profile["merges_done"]) == sorted([first["merge_id"],
                                                           second["merge_id"]])


def test_two_merges_complete_whichever_merge_in_comes_first():
    agent = Agent(NO_DEFS)
    first = identify_input(2, 10, visitor="v1")
    second = identify_input(4, 20, visitor="v2", t=T0 + 2)
    agent.feed(first)
    agent.feed(second)
    agent.feed(event_input(MEMBER, 4, 21, t=T0 + 3))
    agent.feed(merge_in_input(None, 4, 20, visitor="v2"))
    assert agent.profile["counts"] == {} and len(agent.profile["buffered"]) == 3
    agent.feed(merge_in_input(None, 2, 10, visitor="v1"))
    assert agent.profile["counts"] == {"identify": 2, "view": 1}
    assert agent.profile["buffered"] == []


# ---------------------------------------------------------------- merges: the visitor side


def visitor_agent() -> Agent:
    """A visitor that viewed twice (in viewer, left newbie)."""
    agent = Agent()
    agent.feed(event_input(VISITOR, 2, 8, t=T0, user=None, visitor=VISITOR))
    agent.feed(event_input(VISITOR, 2, 9, t=T0 + MINUTE, user=None, visitor=VISITOR))
    return agent


def test_merge_out_hands_the_visitors_state_to_the_member():
    agent = visitor_agent()
    before = copy.deepcopy(agent.profile)
    sends = agent.feed(merge_out_input())
    topic, key, record = decoded(sends)[-1]
    assert (topic, key) == (PROFILE_INPUTS, MEMBER)
    assert {k: v for k, v in record.items() if k != "state"} == {
        "kind": "merge_in", "profile_id": MEMBER, "source_partition": 2, "source_offset": 10,
        "event": None, "visitor_id": VISITOR, "member_id": MEMBER, "merge_id": merge_id()}
    state = WIRE.decode_profile(record["state"])
    assert {k: state[k] for k in STATS} == {k: before[k] for k in STATS}


def test_merge_out_leaves_every_segment_of_the_visitor_because_of_the_merge():
    agent = visitor_agent()
    assert agent.profile["segments"] == ["viewer"]
    sends = agent.feed(merge_out_input())
    mid = merge_id()
    changes = [(r["change_id"], r["segment"], r["change"], r["caused_by"], r["time"])
               for t, _, r in decoded(sends) if t == "segment-changes"]
    assert changes == [(made_by("merge:2:10", VISITOR) + "/segment/viewer/left", "viewer", "left",
                        mid, T0 + MINUTE)]
    assert agent.profile["segments"] == []


def test_merge_out_leaves_a_pointer_with_cleared_statistics():
    agent = visitor_agent()
    agent.feed(merge_out_input())
    fresh = new_profile(VISITOR)
    assert agent.profile["merged_into"] == MEMBER
    assert {k: agent.profile[k] for k in STATS} == {k: fresh[k] for k in STATS}


def test_merge_out_of_a_visitor_without_events_hands_over_no_state():
    agent = Agent()
    sends = agent.feed(merge_out_input())
    assert [(t, k, r["kind"], r["state"]) for t, k, r in decoded(sends)] == \
        [(PROFILE_INPUTS, MEMBER, "merge_in", None)]
    assert agent.profile["merged_into"] == MEMBER


def test_a_redelivered_merge_out_resends_the_same_hand_over():
    agent = visitor_agent()
    offset = agent.next_offset
    first = agent.feed(merge_out_input())
    again = agent.redeliver(merge_out_input(), offset)
    assert again == first and first[-1]["topic"] == PROFILE_INPUTS
    assert agent.profile["merged_into"] == MEMBER


def test_an_event_reaching_a_pointer_is_forwarded_to_the_member():
    agent = visitor_agent()
    agent.feed(merge_out_input())
    stats = agent.stats()
    record = event_input(VISITOR, 2, 12, t=T0 + HOUR, user=None, visitor=VISITOR)
    sends = agent.feed(record)
    assert decoded(sends) == [(PROFILE_INPUTS, MEMBER, {**record, "profile_id": MEMBER})]
    assert agent.stats() == stats


def test_a_merge_travels_from_the_visitor_to_the_member():
    """End to end: identify at the member, merge_out at the visitor, its merge_in at the
    member, then the waiting event sees the merged history."""
    visitor = visitor_agent()
    member = member_with_a_purchase()
    member.feed(identify_input(t=T0 + 2 * MINUTE))
    member.feed(event_input(MEMBER, 2, 11, name="purchase", t=T0 + 3 * MINUTE))
    hand_over = [s for s in visitor.feed(merge_out_input()) if s["topic"] == PROFILE_INPUTS]
    sends = member.feed(WIRE.decode_input(hand_over[0]["value"]))
    assert member.profile["counts"] == {"view": 2, "purchase": 2, "identify": 1}
    assert member.profile["segments"] == ["buyer", "viewer"]
    assert made_by("merge:2:10") + "/segment/viewer/entered" in ids(sends)


def test_a_profile_half_changed_by_a_failed_step_is_rebuilt_from_its_stored_state():
    """The worker keeps changed profiles in memory between writes; when a step fails half-way,
    the stored state with the inputs applied since is the profile as it was before."""
    stored = visitor_state(event("view"), pid=MEMBER)
    inputs = [(event_input(MEMBER, 3, 7, name="purchase", t=T0 + 1), 40, None),
              (event_input(MEMBER, 3, 8, name="view", t=T0 + 2), 41, 40)]
    kept = copy.deepcopy(stored)
    for record, offset, committed in inputs:
        kept, _ = step(kept, record, offset, committed, DEFS, WIRE)
    expected = copy.deepcopy(kept)
    kept["counts"]["purchase"] = 99  # what a step that raised half-way may leave behind
    kept["segments"] = []
    rebuilt = reapply(copy.deepcopy(stored), inputs, DEFS, WIRE)
    assert rebuilt == expected and rebuilt["counts"]["purchase"] == 1
