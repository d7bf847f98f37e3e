"""Batch delivery never skips a table changelog record: records fetched and not delivered because
the flow stopped (a seek, a rebalance's recovery) are read again from the first one not
delivered, within the generation they were fetched in. Input topics of batch agents are read
again from their committed offsets by Faust's own seek, so they are not rewound here."""
from __future__ import annotations

import asyncio
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
