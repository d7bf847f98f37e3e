"""Duplicate events (README "How it works", "Nothing applied twice"; "Limits"): an event whose
`event_id` its profile applied within the dedup window (`CJO_DEDUP_WINDOW`, 7 days of event
time before the profile's latest event) is not applied again: it changes nothing but the
profile's `duplicates` counter and makes nothing. The rule, piece by piece:

1. A re-send (the same event at another offset) changes nothing and makes nothing; its
   position moves on like any input's, and it is counted.
2. The window is by event time, inclusive: an id applied at the window's start still matches;
   once the latest event is later, the same event is applied again (it is outside the window).
   An event older than the window is applied and its id is not kept.
3. At most `max_event_ids` ids are kept, the ones applied earliest forgotten first (counted in
   `limited`); a forgotten id's re-send is applied again.
4. A merge hands the visitor's ids to the member: the visitor's event re-sent after the
   identify is a duplicate there, also while it waits behind the merge barrier.
5. Re-sends, redeliveries and replays: the same inputs give the same profile and the same
   outputs, once.
"""
import copy

from state.durations import DAY, MINUTE
from state.processing import PROFILE_INPUTS, STATS, reapply, step
from state.profile import LIMITS, Limits, event_key, new_profile, seen_before
from tests.model import ReferenceModel
from tests.unit.test_processing import (DEFS, MEMBER, T0, VISITOR, WIRE, Agent, decoded,
                                        event_input, identify_input, merge_out_input)

WINDOW = LIMITS.dedup_window_ms


def view(offset: int, event_id: str, t: int = T0, pid: str = MEMBER, partition: int = 3,
         **fields) -> dict:
    """The profile input of a `view` (the DEFS: the viewer segment, and the banner delivery on
    every view) read at `partition:offset` of the events topic."""
    user, visitor = (pid, None) if pid == MEMBER else (None, pid)
    return event_input(pid, partition, offset, name="view", t=t, event_id=event_id, user=user,
                       visitor=visitor, **fields)


class LimitedAgent(Agent):
    def __init__(self, limits: Limits, defs=DEFS):
        super().__init__(defs)
        self.limits = limits

    def feed(self, record: dict, committed=None) -> list[dict]:
        offset = self.next_offset
        self.next_offset += 1
        self.profile, sends = step(self.profile, record, offset, committed, self.defs, WIRE,
                                   self.limits)
        return sends


# ---------------------------------------------------------------- 1. a re-send


def test_a_re_sent_event_changes_nothing_and_makes_nothing():
    agent = Agent()
    first = agent.feed(view(5, "e-1"))
    assert first and agent.profile["counts"] == {"view": 1}
    before = copy.deepcopy(agent.profile)
    again = agent.feed(view(6, "e-1"))  # the producer sent it again: another offset
    assert again == []
    assert agent.stats() == {k: before[k] for k in STATS}
    assert agent.profile["outbox"] == before["outbox"]
    assert agent.profile["duplicates"] == 1
    assert agent.profile["positions"] == {"3": 6}  # the position moves on like any input's
    assert agent.profile["event_ids"] == before["event_ids"] == {event_key("e-1"): T0}


def test_only_the_id_counts_not_the_content_nor_the_key_it_came_under():
    agent = Agent()
    agent.feed(view(5, "e-1"))
    again = agent.feed(view(9, "e-1", t=T0 + MINUTE, partition=0, values={"path": "/x"}))
    assert again == [] and agent.profile["counts"] == {"view": 1}
    assert agent.profile["last_seen"] == T0 and agent.profile["duplicates"] == 1


def test_another_id_at_the_same_time_is_another_event():
    agent = Agent()
    agent.feed(view(5, "e-1"))
    assert agent.feed(view(6, "e-2"))
    assert agent.profile["counts"] == {"view": 2} and agent.profile["duplicates"] == 0


def test_a_redelivered_re_send_sends_nothing_and_the_original_its_outbox():
    """A redelivery (the same offset, after a crash before the commit) is not a re-send: the
    first copy sends its outbox again, the dropped copy made nothing to send."""
    agent = Agent()
    first = agent.feed(view(5, "e-1"))
    agent.feed(view(6, "e-1"))
    assert agent.redeliver(view(6, "e-1"), 1) == []
    assert agent.redeliver(view(5, "e-1"), 0) == first
    assert agent.profile["duplicates"] == 1 and agent.profile["counts"] == {"view": 1}


# ---------------------------------------------------------------- 2. the window


def test_the_window_is_by_event_time_and_includes_its_start():
    agent = Agent()
    agent.feed(view(1, "old", t=T0))
    agent.feed(view(2, "new", t=T0 + WINDOW))  # the latest event: the window starts at T0
    assert agent.feed(view(3, "old", t=T0)) == []
    assert agent.profile["duplicates"] == 1
    agent.feed(view(4, "newer", t=T0 + WINDOW + 1))  # now T0 is outside the window
    assert agent.feed(view(5, "old", t=T0))  # applied again: outputs
    assert agent.profile["counts"] == {"view": 4} and agent.profile["duplicates"] == 1


def test_an_event_older_than_the_window_is_applied_and_its_id_not_kept():
    agent = Agent()
    agent.feed(view(1, "now", t=T0 + 30 * DAY))
    agent.feed(view(2, "late", t=T0))  # 30 days late: applied (counted, judged)
    agent.feed(view(3, "late", t=T0))  # and its re-send too: no id kept for it
    assert agent.profile["counts"] == {"view": 3} and agent.profile["duplicates"] == 0
    assert set(agent.profile["event_ids"]) == {event_key("now")}


def test_ids_out_of_the_window_are_dropped_as_it_moves_without_counting():
    agent = Agent()
    for n in range(5):
        agent.feed(view(n, f"e{n}", t=T0 + n * DAY))
    agent.feed(view(5, "e5", t=T0 + 9 * DAY))  # window from T0 + 2 days on
    assert list(agent.profile["event_ids"].values()) == [T0 + 2 * DAY, T0 + 3 * DAY,
                                                         T0 + 4 * DAY, T0 + 9 * DAY]
    assert "event_ids" not in agent.profile["limited"]


def test_the_window_is_a_setting():
    """CJO_DEDUP_WINDOW (seconds) and CJO_MAX_EVENT_IDS_PER_PROFILE reach the domain's limits."""
    from cjo.settings import Settings

    settings = Settings.from_env({"CJO_DEDUP_WINDOW": "3600",
                                  "CJO_MAX_EVENT_IDS_PER_PROFILE": "20"})
    limits = Limits.from_settings(settings)
    assert (limits.dedup_window_ms, limits.max_event_ids) == (3_600_000, 20)
    assert Limits.from_settings(Settings.from_env({})).dedup_window_ms == 7 * DAY == WINDOW
    agent = LimitedAgent(limits)
    agent.feed(view(1, "a", t=T0))
    agent.feed(view(2, "b", t=T0 + 3_600_001))
    assert agent.feed(view(3, "a", t=T0))  # an hour and more before the latest: applied


# ---------------------------------------------------------------- 3. the count bound


def test_at_most_max_event_ids_are_kept_the_earliest_applied_forgotten_first():
    agent = LimitedAgent(Limits(max_event_ids=3))
    for n, eid in enumerate("abcd"):
        agent.feed(view(n, eid, t=T0 + n))
    assert list(agent.profile["event_ids"]) == [event_key(e) for e in "bcd"]
    assert agent.profile["limited"] == {"event_ids": 1}
    assert agent.feed(view(4, "d", t=T0 + 3)) == []  # still kept: a duplicate
    assert agent.feed(view(5, "a", t=T0))  # forgotten: applied again
    assert agent.profile["counts"] == {"view": 5} and agent.profile["duplicates"] == 1
    assert len(agent.profile["event_ids"]) == 3


def test_a_late_event_waits_its_turn_in_the_order_applied():
    """Ids are kept in the order applied: a late event's id is forgotten after the ids applied
    before it, whatever its time."""
    agent = LimitedAgent(Limits(max_event_ids=2))
    agent.feed(view(0, "a", t=T0 + 10))
    agent.feed(view(1, "late", t=T0))
    agent.feed(view(2, "b", t=T0 + 20))
    assert list(agent.profile["event_ids"]) == [event_key("late"), event_key("b")]


# ---------------------------------------------------------------- 4. merges


def merged_member(*held: dict) -> tuple[Agent, list[list[dict]]]:
    """A visitor that viewed (e-v1, e-v2) is identified as the member, which viewed once
    (e-m1): the barrier reaches the member, `held` inputs come to it before the visitor's
    hand-over, then the hand-over. Returns the member and what each held input and the
    hand-over sent."""
    visitor = Agent()
    visitor.feed(view(8, "e-v1", pid=VISITOR, partition=2))
    visitor.feed(view(9, "e-v2", t=T0 + MINUTE, pid=VISITOR, partition=2))
    handed = [r for t, _, r in decoded(visitor.feed(merge_out_input())) if t == PROFILE_INPUTS]
    assert visitor.profile["event_ids"] == {}  # they went with the state
    member = Agent()
    member.feed(view(1, "e-m1", t=T0 - MINUTE))
    member.feed(identify_input(t=T0 + 2 * MINUTE))
    sent = [member.feed(record) for record in held]
    sent.append(member.feed(handed[0]))
    return member, sent


def test_a_merge_hands_the_visitors_ids_to_the_member():
    member, _ = merged_member()
    ids = member.profile["event_ids"]
    assert list(ids) == [event_key(e) for e in ("e-m1", "e-v1", "e-v2", "identify@" +
                                                str(T0 + 2 * MINUTE))]
    before = copy.deepcopy(member.profile)
    # The visitor's event re-sent after the identify: routed to the member, a duplicate.
    assert member.feed(view(20, "e-v1", pid=MEMBER, partition=2)) == []
    assert member.stats() == {k: before[k] for k in STATS}
    assert member.profile["duplicates"] == 1


def test_a_re_send_held_behind_the_merge_barrier_is_dropped_when_the_history_arrives():
    member, sent = merged_member(view(11, "e-v2", t=T0 + MINUTE, pid=MEMBER, partition=2),
                                 view(12, "e-m1", t=T0 - MINUTE, pid=MEMBER, partition=2),
                                 view(13, "e-new", t=T0 + 3 * MINUTE, pid=MEMBER, partition=2))
    assert sent[:3] == [[], [], []]  # held
    assert member.profile["duplicates"] == 2  # e-v2 and e-m1, applied after the fold
    assert member.profile["counts"] == {"view": 4, "identify": 1}  # e-m1, e-v1, e-v2, e-new
    assert member.profile["positions"]["2"] == 13


def test_the_merged_ids_keep_the_window_and_the_bound():
    member = new_profile(MEMBER)
    visitor = new_profile(VISITOR)
    limits = Limits(max_event_ids=3)
    for profile, times in ((member, (T0 - 8 * DAY, T0)), (visitor, (T0 + 1, T0 + 2, T0 + 3))):
        for n, t in enumerate(times):
            assert not seen_before(profile, {"event_id": f"{profile['profile_id']}{n}",
                                             "time": t}, limits)
            profile["last_seen"] = t
    from state.profile import fold_visitor

    fold_visitor(member, visitor, limits)
    assert list(member["event_ids"].values()) == [T0 + 1, T0 + 2, T0 + 3]
    assert member["limited"] == {"event_ids": 1}  # m1 (T0) forgotten; m0 was out of the window


# ---------------------------------------------------------------- 5. replays


def inputs_with_re_sends() -> list[dict]:
    records, offset = [], 0
    for n in range(30):
        eid = f"e{n % 12}"  # every id sent two or three times, at other offsets
        records.append(view(offset, eid, t=T0 + (n % 12) * MINUTE))
        offset += 1
    return records


def test_a_replay_drops_the_same_events_and_makes_the_same_outputs():
    def run() -> tuple[dict, list]:
        agent, outputs = Agent(), []
        for record in inputs_with_re_sends():
            outputs += agent.feed(record)
        return agent.profile, outputs

    profile, outputs = run()
    assert (profile, outputs) == run()
    assert profile["counts"] == {"view": 12} and profile["duplicates"] == 18
    # The worker's replay of a failed batch (state.processing.reapply) rebuilds the same state.
    replayed = reapply(None, [(r, n, None) for n, r in enumerate(inputs_with_re_sends())],
                       DEFS, WIRE)
    assert replayed == profile
    # Every output once: its id is unique.
    made = decoded(outputs)
    ids = [r.get("change_id") or r.get("activation_id") for _, _, r in made]
    assert len(ids) == len(set(ids))
    assert sum(1 for topic, _, _ in made if topic == "activations") == 12  # a banner a view


def test_the_reference_model_drops_the_same_events():
    """The model keeps its own record of ids (tests/model.py): it agrees with the agent."""
    model, agent = ReferenceModel(DEFS), Agent()
    for record in inputs_with_re_sends():
        agent.feed(record)
        model.apply(record["source_partition"], record["source_offset"], record["event"])
    assert model.duplicates == agent.profile["duplicates"] == 18
    assert model.states()[MEMBER]["counts"] == agent.profile["counts"]
