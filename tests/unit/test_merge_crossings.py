"""Events that cross a merge out of event-time order (README "How it works", "Merges before
what follows them"; issue 19, part 1). A merge is ordered with what the identify's own
partition of the events topic delivers after it (the visitor's key); events under other keys
(the member's own) reach the member in the order they arrive. The member counts, in
`merge_crossings`, each event it applies on the other side of a merge than its event time
puts it:

1. When the merge's barrier (the identify) reaches the member, each event the member applied
   before it that happened after the identify (as far as its event ids reach).
2. After the barrier, each event from another partition than the identify's that happened
   before the identify: applied at once, or after waiting behind the barrier.
3. Never an event of the identify's own partition (it comes after the identify because it was
   sent after it), never a duplicate, never an event in event-time order.
4. A redelivered barrier or event counts nothing again; the count survives the codec.
"""
from state.durations import MINUTE
from state.processing import PROFILE_INPUTS, crosses_merge
from tests.unit.test_processing import (MEMBER, T0, VISITOR, WIRE, Agent, decoded, event_input,
                                        identify_input, merge_out_input)

IDENTIFY_PARTITION = 2  # identify_input's
OTHER = 5  # the member's own key's partition


def member_event(offset: int, t: int, event_id: str, partition: int = OTHER) -> dict:
    return event_input(MEMBER, partition, offset, name="view", t=t, event_id=event_id)


def visitor_event_to_member(offset: int, t: int, event_id: str) -> dict:
    """A visitor's event after its identify, which the alias routes to the member."""
    return event_input(MEMBER, IDENTIFY_PARTITION, offset, name="view", t=t, event_id=event_id,
                       visitor=VISITOR, user=None)


def hand_over(member: Agent, visitor: Agent | None = None) -> None:
    visitor = visitor or Agent()
    handed = [r for t, _, r in decoded(visitor.feed(merge_out_input())) if t == PROFILE_INPUTS]
    member.feed(handed[0])


def test_member_events_applied_before_the_barrier_that_happened_after_the_identify_count():
    member = Agent()
    member.feed(member_event(1, T0 + MINUTE, "m-after-1"))  # sent after the identify
    member.feed(member_event(2, T0 - MINUTE, "m-before"))  # happened before it: in order
    member.feed(member_event(3, T0 + 2 * MINUTE, "m-after-2"))
    member.feed(identify_input(t=T0))
    assert member.profile["merge_crossings"] == 2
    assert member.profile["merge_times"] == {str(IDENTIFY_PARTITION): T0}
    hand_over(member)
    assert member.profile["merge_crossings"] == 2  # the hand-over adds nothing


def test_member_events_after_the_barrier_that_happened_before_the_identify_count():
    member = Agent()
    member.feed(identify_input(t=T0))
    member.feed(member_event(1, T0 - MINUTE, "m-sent-before"))  # waits behind the barrier
    member.feed(member_event(2, T0 + MINUTE, "m-sent-after"))  # in order
    assert member.profile["merge_crossings"] == 0  # not applied yet
    hand_over(member)
    assert member.profile["counts"]["view"] == 2
    assert member.profile["merge_crossings"] == 1
    member.feed(member_event(3, T0 - 2 * MINUTE, "m-late"))  # long after: applied at once
    assert member.profile["merge_crossings"] == 2


def test_the_identifys_own_partition_is_in_order_even_with_older_times():
    """The visitor's events after the identify, and events with both ids under the visitor's
    key, come through the identify's partition after it: sent after it, so in order, late
    event times or not."""
    member = Agent()
    member.feed(identify_input(t=T0))
    member.feed(visitor_event_to_member(11, T0 - MINUTE, "v-late"))
    member.feed(event_input(MEMBER, IDENTIFY_PARTITION, 12, name="view", t=T0 - MINUTE,
                            event_id="both-late", visitor=VISITOR, user=MEMBER))
    hand_over(member)
    member.feed(visitor_event_to_member(13, T0 - 2 * MINUTE, "v-later"))
    assert member.profile["counts"]["view"] == 3
    assert member.profile["merge_crossings"] == 0


def test_events_in_event_time_order_with_the_merge_count_nothing():
    member = Agent()
    member.feed(member_event(1, T0 - 2 * MINUTE, "m-1"))
    member.feed(identify_input(t=T0))
    member.feed(member_event(2, T0 + MINUTE, "m-2"))
    hand_over(member)
    member.feed(member_event(3, T0 + 2 * MINUTE, "m-3"))
    member.feed(member_event(4, T0, "m-at-the-identify"))  # the same time: not before it
    assert member.profile["merge_crossings"] == 0


def test_a_duplicate_and_a_redelivery_count_nothing_again():
    member = Agent()
    member.feed(identify_input(t=T0))
    hand_over(member)
    member.feed(member_event(1, T0 - MINUTE, "m-1"))
    assert member.profile["merge_crossings"] == 1
    member.feed(member_event(2, T0 - MINUTE, "m-1"))  # a re-send: dropped, not counted
    assert member.profile["duplicates"] == 1
    member.redeliver(member_event(1, T0 - MINUTE, "m-1"), member.next_offset - 2)
    member.feed(identify_input(t=T0))  # the barrier forwarded again: the merge is done
    assert member.profile["merge_crossings"] == 1


def test_the_latest_identify_per_partition_is_kept():
    member = Agent()
    member.feed(identify_input(t=T0))
    hand_over(member)
    second = identify_input(partition=IDENTIFY_PARTITION, offset=20, visitor="v-2", t=T0 - MINUTE)
    member.feed(second)  # an older identify of the same partition: the later one stays
    assert member.profile["merge_times"] == {str(IDENTIFY_PARTITION): T0}
    assert crosses_merge(member.profile, member_event(0, T0 - 1, "x"))
    assert not crosses_merge(member.profile, member_event(0, T0, "x"))
    assert not crosses_merge(member.profile, member_event(0, T0 - 1, "x",
                                                          partition=IDENTIFY_PARTITION))


def test_the_count_and_the_times_survive_the_codec_and_stay_out_of_a_merge():
    from schemas.internal import codec_for

    codec = codec_for("profile", "t")
    member = Agent()
    member.feed(member_event(1, T0 + MINUTE, "m-1"))
    member.feed(identify_input(t=T0))
    again = codec.decode(codec.encode(member.profile))
    assert (again["merge_crossings"], again["merge_times"]) == (1, {"2": T0})
    # A visitor's own count (it could be a member of another merge) does not go to the member.
    visitor = Agent()
    visitor.profile = WIRE.decode_profile(WIRE.encode_profile(member.profile))
    visitor.profile.update(profile_id=VISITOR, pending_merges=[], buffered=[], merges_done=[],
                           positions={})
    other = Agent()
    other.feed(identify_input(t=T0))
    hand_over(other, visitor)
    assert other.profile["merge_crossings"] == 0
