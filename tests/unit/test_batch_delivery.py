"""Batch delivery never skips a table changelog record: records fetched and not delivered because
the flow stopped (a seek, a rebalance's recovery) are read again from the first one not
delivered, within the generation they were fetched in. Input topics of batch agents are read
again from their committed offsets by Faust's own seek, so they are not rewound here."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from topology.machinery.batches import BatchDelivery

INPUTS = TP("app.profile-inputs", 1)
CHANGELOG = TP("app-profiles-changelog", 1)


class Signal:
    def connect(self, fn):
        return fn


class FakeConsumer:
    """The parts of Faust's consumer that batch delivery touches; the flow stops after
    `stop_after` changelog records were delivered, as Faust's recovery stops it to seek."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.flow_active = True
        self.stop_after = stop_after
        self.delivered: list[tuple] = []
        self.seeks: list[tuple] = []
        self._read_offset: dict = {}
        self._buffered_partitions: set = set()
        self._acked: dict = {}
        self.suspend_flow = asyncio.Event()

    async def callback(self, message) -> None:
        self.delivered.append((message.tp, message.offset))
        if self.stop_after is not None and len(self.delivered) >= self.stop_after:
            self.flow_active = False

    def _to_message(self, tp, record):
        return SimpleNamespace(tp=tp, offset=record.offset)

    async def wait_first(self, *coros):
        await coros[0]
        coros[1].close()

    async def seek(self, tp, offset) -> None:
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset

    def highwater(self, tp) -> int:
        return 0


def delivery(generation: int = 3):
    app = SimpleNamespace(on_partitions_revoked=Signal(), consumer_generation_id=generation,
                          monitor=SimpleNamespace(track_tp_end_offset=lambda tp, hw: None),
                          topics=SimpleNamespace(add=lambda topic: None))
    return BatchDelivery(app)


def records(tp, first: int, n: int) -> list:
    return [SimpleNamespace(offset=o) for o in range(first, first + n)]


def run(coro):
    return asyncio.run(coro)


def test_a_changelog_batch_cut_short_by_a_stop_of_the_flow_is_read_again_from_where_it_stopped():
    batches, consumer = delivery(), FakeConsumer(stop_after=4)
    run(batches._deliver(consumer, {CHANGELOG: records(CHANGELOG, 0, 10)}, None, 3))
    assert [o for _, o in consumer.delivered] == [0, 1, 2, 3]
    assert consumer.seeks == [(CHANGELOG, 4)]


def test_changelog_records_fetched_across_a_stop_of_the_flow_are_read_again():
    batches, consumer = delivery(), FakeConsumer()
    consumer.flow_active = False
    run(batches._rewind(consumer, {CHANGELOG: records(CHANGELOG, 0, 52)}, 3))
    assert consumer.seeks == [(CHANGELOG, 0)]


def test_what_follows_a_stop_in_the_same_fetch_is_read_again_too():
    batches, consumer = delivery(), FakeConsumer(stop_after=2)
    other = TP("app-wakeups-changelog", 1)
    fetched = {CHANGELOG: records(CHANGELOG, 5, 2), other: records(other, 7, 3)}
    run(batches._deliver(consumer, fetched, None, 3))
    assert consumer.seeks == [(other, 7)]


def test_nothing_is_rewound_once_the_generation_changed():
    batches, consumer = delivery(generation=4), FakeConsumer()
    run(batches._rewind(consumer, {CHANGELOG: records(CHANGELOG, 0, 52)}, 3))
    assert consumer.seeks == []


def test_inputs_of_batch_agents_are_left_to_the_seek_to_their_committed_offsets():
    batches, consumer = delivery(), FakeConsumer()
    batches.agents[INPUTS.topic] = None
    run(batches._rewind(consumer, {INPUTS: records(INPUTS, 0, 5)}, 3))
    assert consumer.seeks == []


def test_a_partition_no_longer_assigned_is_not_an_error():
    from aiokafka.errors import IllegalStateError

    class Unassigned(FakeConsumer):
        async def seek(self, tp, offset) -> None:
            raise IllegalStateError(f"No current assignment for partition {tp}")

    batches, consumer = delivery(), Unassigned()
    run(batches._rewind(consumer, {CHANGELOG: records(CHANGELOG, 0, 3)}, 3))


def test_a_changelog_paused_after_its_records_were_fetched_is_read_again_from_them():
    batches, consumer = delivery(), FakeConsumer()
    active = {INPUTS}  # recovery paused the standby's changelog meanwhile
    run(batches._deliver(consumer, {CHANGELOG: records(CHANGELOG, 0, 36)}, active, 3))
    assert consumer.delivered == []
    assert consumer.seeks == [(CHANGELOG, 0)]


# Our own records without a fetch: records the worker's sender had acknowledged on a batch
# agent's topic are applied at once when they are the next ones of their partition, at their
# offsets; otherwise (a gap, a stop, a new generation) the fetch brings them as before. Either
# way each offset is applied once, in order.

def with_agent(generation: int = 3):
    batches, consumer = delivery(generation), FakeConsumer()
    consumer._acked = defaultdict(list)  # as Faust's: an ack list per partition it commits
    batches.consumer = consumer
    applied: list[tuple] = []

    async def agent(tp, chunk) -> None:
        applied.extend((r.offset, r.value, r.timestamp) for r in chunk)

    batches.agents[INPUTS.topic] = agent
    return batches, consumer, applied


def fetched(tp, first: int, n: int) -> list:
    return [SimpleNamespace(offset=o, value=b"v%d" % o, timestamp=1)
            for o in range(first, first + n)]


def acked(first: int, n: int) -> tuple[list, list]:
    return [(b"k", b"v%d" % o) for o in range(first, first + n)], [7] * n


async def settle(batches) -> None:
    while batches._handing is not None and not batches._handing.done():
        await asyncio.sleep(0)


def test_acknowledged_records_that_come_next_are_applied_at_once_and_their_fetched_copies_dropped():
    batches, consumer, applied = with_agent()

    async def scenario():
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 3)}, None, 3)
        batches.hand_off(INPUTS.topic, INPUTS.partition, 3, *acked(3, 2))
        batches.hand_off(INPUTS.topic, INPUTS.partition, 5, *acked(5, 1))  # behind the first
        await settle(batches)
        # The fetch brings the same records, and one more written by someone else.
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 3, 4)}, None, 3)

    run(scenario())
    assert [o for o, _, _ in applied] == [0, 1, 2, 3, 4, 5, 6]
    assert applied[3] == (3, b"v3", 7)  # the acknowledged record, with its timestamp
    assert batches.done[INPUTS] == 7 and consumer._read_offset[INPUTS] == 6
    assert batches.hand_offs == 2


def test_records_acknowledged_after_a_gap_wait_for_the_fetch():
    batches, consumer, applied = with_agent()

    async def scenario():
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 3)}, None, 3)
        batches.hand_off(INPUTS.topic, INPUTS.partition, 4, *acked(4, 2))  # 3: another writer's
        await settle(batches)
        assert [o for o, _, _ in applied] == [0, 1, 2]
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 3, 3)}, None, 3)

    run(scenario())
    assert [o for o, _, _ in applied] == [0, 1, 2, 3, 4, 5]
    assert batches.hand_offs == 0


def test_a_fetched_batch_that_came_first_is_not_applied_again_from_the_hand_off():
    batches, consumer, applied = with_agent()

    async def scenario():
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 3)}, None, 3)
        batches.hand_off(INPUTS.topic, INPUTS.partition, 3, *acked(3, 2))
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 3, 2)}, None, 3)
        await settle(batches)
        # After the fetch went past them, the next acknowledged batch is handed off again.
        batches.hand_off(INPUTS.topic, INPUTS.partition, 5, *acked(5, 1))
        await settle(batches)

    run(scenario())
    assert [o for o, _, _ in applied] == [0, 1, 2, 3, 4, 5]
    assert batches.hand_offs == 1


def test_nothing_is_handed_off_before_a_fetched_batch_or_across_a_stop_or_a_rebalance():
    batches, consumer, applied = with_agent()

    async def scenario():
        batches.hand_off(INPUTS.topic, INPUTS.partition, 0, *acked(0, 2))  # nothing applied yet
        await settle(batches)
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 1)}, None, 3)
        consumer.flow_active = False  # a seek or a rebalance began
        batches.hand_off(INPUTS.topic, INPUTS.partition, 1, *acked(1, 1))
        await settle(batches)
        consumer.flow_active = True
        batches.app.consumer_generation_id = 4
        batches.hand_off(INPUTS.topic, INPUTS.partition, 1, *acked(1, 1))
        batches.app.consumer_generation_id = 5  # acknowledged in 4, applied in 5: no
        await settle(batches)
        batches._forget(None, {INPUTS})  # revoked: nothing is the next record any more
        batches.hand_off(INPUTS.topic, INPUTS.partition, 1, *acked(1, 1))
        await settle(batches)

    run(scenario())
    assert [o for o, _, _ in applied] == [0]
    assert batches.hand_offs == 0


def test_records_of_topics_without_a_batch_agent_are_not_handed_off():
    batches, consumer, applied = with_agent()
    batches.done[CHANGELOG] = 0
    batches.hand_off(CHANGELOG.topic, CHANGELOG.partition, 0, *acked(0, 1))
    assert not batches.handed and applied == []


def test_a_handed_off_batch_that_fails_stops_the_worker():
    batches, consumer, applied = with_agent()
    failures = []
    batches.on_failure = lambda reason, exc: failures.append(reason)

    async def failing(tp, chunk) -> None:
        raise RuntimeError("store refused")

    async def scenario():
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 1)}, None, 3)
        batches.agents[INPUTS.topic] = failing
        batches.hand_off(INPUTS.topic, INPUTS.partition, 1, *acked(1, 1))
        await settle(batches)

    run(scenario())
    assert failures == ["a handed-off batch failed: RuntimeError('store refused')"]
    assert batches.done[INPUTS] == 1  # not counted as applied: nothing more is committed


def test_nothing_is_handed_off_while_the_fetch_is_ahead_of_the_agent():
    """The last fetch saw records from the acknowledged offset on: the worker is behind (a
    catch-up), and those records come with the fetch, in larger batches."""
    batches, consumer, applied = with_agent()
    consumer.highwater = lambda tp: 40

    async def scenario():
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 3)}, None, 3)
        batches.hand_off(INPUTS.topic, INPUTS.partition, 3, *acked(3, 2))
        await settle(batches)

    run(scenario())
    assert [o for o, _, _ in applied] == [0, 1, 2] and batches.hand_offs == 0


def test_nothing_is_handed_off_during_a_catch_up():
    """The last fetch left more than MAX_HANDED records of a partition in the log (here the
    events topic's): the worker is catching up, and the agents get the fetch's larger batches;
    once a fetch leaves little behind, hand-offs resume."""
    from topology.machinery.batches import MAX_HANDED

    batches, consumer, applied = with_agent()
    events = TP("app.events", 1)
    batches.agents[events.topic] = lambda tp, chunk: asyncio.sleep(0)
    ends = {events: 10 + MAX_HANDED + 1, INPUTS: 3}
    consumer.highwater = lambda tp: ends[tp]

    async def scenario():
        await batches._deliver(consumer, {INPUTS: fetched(INPUTS, 0, 3),
                                          events: fetched(events, 0, 10)}, None, 3)
        batches.hand_off(INPUTS.topic, INPUTS.partition, 3, *acked(3, 2))
        await settle(batches)
        assert batches.hand_offs == 0
        ends[events] = 20
        await batches._deliver(consumer, {events: fetched(events, 10, 10)}, None, 3)
        batches.hand_off(INPUTS.topic, INPUTS.partition, 3, *acked(3, 2))
        await settle(batches)

    run(scenario())
    assert [o for o, _, _ in applied] == [0, 1, 2, 3, 4] and batches.hand_offs == 1
