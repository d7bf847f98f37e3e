"""Agents send records straight to the producer Faust flushes before it commits; a record the
broker refuses in the end stops the worker before anything more is committed."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from topology.machinery import sending
from topology.machinery.sending import Sender


class FakeProducer:
    def __init__(self) -> None:
        self.sent = []
        self.futures = []

    async def send(self, topic, key, value, partition, timestamp, headers):
        self.sent.append((topic, key, value, partition))
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def run(outcome, monkeypatch):
    stopped = []
    monkeypatch.setattr(sending, "stop_worker", lambda reason, exc=None: stopped.append(reason))
    producer = FakeProducer()
    sender = Sender(SimpleNamespace(producer=producer), {"segment-changes": "app.segment-changes"})

    async def scenario():
        await sender.send("segment-changes", b"u1", b"record")
        outcome(producer.futures[0])
        await asyncio.sleep(0)  # done-callbacks run on the next loop turn

    asyncio.run(scenario())
    return producer, stopped


def test_a_record_goes_to_the_kafka_topic_keyed_as_given_partitioned_by_the_producer(
        monkeypatch):
    producer, stopped = run(lambda f: f.set_result("metadata"), monkeypatch)
    assert producer.sent == [("app.segment-changes", b"u1", b"record", None)]
    assert stopped == []


def test_a_record_the_broker_refuses_stops_the_worker(monkeypatch):
    _, stopped = run(lambda f: f.set_exception(TimeoutError("delivery timed out")), monkeypatch)
    assert stopped == ["a record was not delivered: TimeoutError('delivery timed out')"]


# -- what batch agents submit ---------------------------------------------------------------

class FakeBuilder:
    def __init__(self, room: int) -> None:
        self.records, self.room, self.closed = [], room, False

    def append(self, *, timestamp, key, value, headers):
        if self.closed or (self.records and len(self.records) >= self.room):
            return None
        self.records.append((key, value))
        return SimpleNamespace(timestamp=1000 + len(self.records))  # as aiokafka's metadata

    def close(self) -> None:
        self.closed = True


class FakeKafka:
    """aiokafka's producer as the Sender uses it: metadata, record batches, one future each."""

    def __init__(self, partitions: int, room: int = 100) -> None:
        async def known(topic):
            return None
        self.client = SimpleNamespace(
            _wait_on_metadata=known,
            cluster=SimpleNamespace(partitions_for_topic=lambda t: set(range(partitions))))
        self.room = room
        self.batches = []  # (topic, partition, records, future)
        # aiokafka keeps one batch per partition queued; a second waits for it to be sent
        self._message_accumulator = SimpleNamespace(_batches={})

    def create_batch(self):
        return FakeBuilder(self.room)

    async def send_batch(self, builder, topic, *, partition):
        future = asyncio.get_running_loop().create_future()
        self.batches.append((topic, partition, builder.records, future))
        return future


def submitted(outgoings, monkeypatch, partitions=4, room=100, outcome=None):
    stopped = []
    monkeypatch.setattr(sending, "stop_worker", lambda reason, exc=None: stopped.append(reason))
    kafka = FakeKafka(partitions, room)
    sender = Sender(SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: kafka)),
                    {"segment-changes": "app.segment-changes"})

    async def scenario():
        for outgoing in outgoings:
            await sender.submit(outgoing)
        await sender.flush()
        for *_, future in kafka.batches:
            (outcome or (lambda f: f.set_result(SimpleNamespace(offset=7))))(future)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    return kafka.batches, stopped


def test_submitted_records_go_out_in_order_per_partition_keyed_as_the_producer_would(
        monkeypatch):
    from aiokafka.partitioner import DefaultPartitioner
    first, second = sending.Outgoing(), sending.Outgoing()
    keys = [f"u{n}".encode() for n in range(20)]
    for n, key in enumerate(keys):
        (first if n < 10 else second).add("segment-changes", key, b"%d" % n)
    batches, stopped = submitted([first, second], monkeypatch)
    assert stopped == []
    partitioner = DefaultPartitioner()
    for topic, partition, records, _ in batches:
        assert topic == "app.segment-changes"
        assert all(partitioner(k, [0, 1, 2, 3], [0, 1, 2, 3]) == partition for k, _ in records)
    sent = [v for *_, records, _ in batches for _, v in records]
    assert sorted(sent) == sorted(b"%d" % n for n in range(20))
    for partition in range(4):  # each partition's records in the order they were submitted
        mine = [int(v) for _, p, records, _ in batches if p == partition for _, v in records]
        assert mine == sorted(mine)


def test_a_full_record_batch_is_sent_and_the_partition_goes_on_in_a_new_one(monkeypatch):
    outgoing = sending.Outgoing()
    for n in range(5):
        outgoing.add("app-profiles-changelog", b"k%d" % n, b"%d" % n, partition=2)
    batches, _ = submitted([outgoing], monkeypatch, room=2)
    assert [(t, p, [v for _, v in r]) for t, p, r, _ in batches] == [
        ("app-profiles-changelog", 2, [b"0", b"1"]),
        ("app-profiles-changelog", 2, [b"2", b"3"]),
        ("app-profiles-changelog", 2, [b"4"])]


def test_acknowledged_batches_report_their_last_offset(monkeypatch):
    seen = []
    outgoing = sending.Outgoing()
    for n in range(3):
        outgoing.add("app-profiles-changelog", b"k%d" % n, b"v", partition=1)
    outgoing.on_sent["app-profiles-changelog"] = lambda t, p, o: seen.append((t, p, o))
    submitted([outgoing], monkeypatch)
    assert seen == [("app-profiles-changelog", 1, 7 + 3 - 1)]  # base offset 7, three records


def test_a_submitted_batch_the_broker_refuses_stops_the_worker(monkeypatch):
    outgoing = sending.Outgoing()
    outgoing.add("segment-changes", b"u1", b"v")
    _, stopped = submitted([outgoing], monkeypatch,
                           outcome=lambda f: f.set_exception(TimeoutError("expired")))
    assert stopped == ["a record was not delivered: TimeoutError('expired')"]


def test_a_partition_whose_batch_must_wait_holds_back_no_other_partition(monkeypatch):
    """aiokafka lets a partition's batch join its queue only once the one before it was sent;
    the round queues every other partition meanwhile, and the waiting one after."""
    from aiokafka.structs import TopicPartition

    kafka = FakeKafka(partitions=2)
    kafka._message_accumulator._batches[TopicPartition("t", 0)] = ["a batch not sent yet"]
    sent = asyncio.Event()
    send_batch = kafka.send_batch

    async def draining_send_batch(builder, topic, *, partition):
        if partition == 0:
            await sent.wait()
        return await send_batch(builder, topic, partition=partition)

    kafka.send_batch = draining_send_batch
    sender = Sender(SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: kafka)), {})
    outgoing = sending.Outgoing()
    outgoing.add("t", b"to-0", b"a", partition=0)
    outgoing.add("t", b"to-1", b"b", partition=1)
    outgoing.add("t", b"to-0", b"c", partition=0)

    async def scenario():
        await sender.submit(outgoing)
        for _ in range(5):
            await asyncio.sleep(0)
        before = [(p, [v for _, v in r]) for _, p, r, _ in kafka.batches]
        sent.set()
        await asyncio.wait_for(sender.flush(), 1)
        return before, [(p, [v for _, v in r]) for _, p, r, _ in kafka.batches]

    before, after = asyncio.run(scenario())
    assert before == [(1, [b"b"])]
    assert after == [(1, [b"b"]), (0, [b"a", b"c"])]


def test_agents_are_held_back_while_too_many_bytes_wait_for_the_producer(monkeypatch):
    """The memory records wait in is bounded: past MAX_PENDING_BYTES, `submit` returns only
    once the producer has taken them."""
    monkeypatch.setattr(sending, "MAX_PENDING_BYTES", 10)
    kafka = FakeKafka(partitions=1)
    gate = asyncio.Event()  # bound to the loop that first waits on it
    send_batch = kafka.send_batch

    async def slow_send_batch(builder, topic, *, partition):
        await gate.wait()  # the producer is behind
        return await send_batch(builder, topic, partition=partition)

    kafka.send_batch = slow_send_batch
    sender = Sender(SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: kafka)), {})
    small, large = sending.Outgoing(), sending.Outgoing()
    small.add("t", b"k", b"1234")  # 5 bytes: under the bound
    large.add("t", b"k", b"1234567890")  # 11 bytes: together over it

    async def scenario():
        await asyncio.wait_for(sender.submit(small), 1)  # returns at once
        held = asyncio.ensure_future(sender.submit(large))
        await asyncio.sleep(0.05)
        assert not held.done() and sender.pending_bytes == 16
        gate.set()
        await asyncio.wait_for(held, 1)
        await sender.flush()
        assert sender.pending_bytes == 0
        return [v for *_, records, _ in kafka.batches for _, v in records]

    assert asyncio.run(scenario()) == [b"1234", b"1234567890"]


def test_keys_go_to_the_partition_the_producers_partitioner_picks():
    """The compiled hash puts every key where aiokafka's (and Java's) default partitioner does:
    keys of every length modulo 4 (murmur2's tail), empty, and any bytes."""
    import random

    from aiokafka.partitioner import DefaultPartitioner, murmur2

    from topology.machinery.sending import key_hash

    rng = random.Random(18)
    keys = [f"u{i:05d}".encode() for i in range(500)] + [b""] + [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) for _ in range(2000)]
    partitions = list(range(8))
    for key in keys:
        assert key_hash(key) == murmur2(key) & 0x7FFFFFFF
        assert key_hash(key) % 8 == DefaultPartitioner()(key, partitions, partitions)


def test_a_flush_waits_for_what_was_submitted_before_it_not_for_an_empty_queue(monkeypatch):
    """A commit's flush needs only the records of the inputs it commits, submitted before it.
    Under a steady flow of input the queue is seldom empty: waiting for that held commits for
    seconds."""
    kafka = FakeKafka(partitions=1)
    send_batch = kafka.send_batch

    async def slow_send_batch(builder, topic, *, partition):
        await asyncio.sleep(0.01)  # the producer takes a while for each batch
        return await send_batch(builder, topic, partition=partition)

    kafka.send_batch = slow_send_batch
    sender = Sender(SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: kafka)), {})

    def outgoing(value: bytes) -> sending.Outgoing:
        made = sending.Outgoing()
        made.add("t", b"k", value)
        return made

    async def scenario():
        await sender.submit(outgoing(b"before"))
        flushed = asyncio.ensure_future(sender.flush())
        for n in range(50):  # more every 5 ms: the sender never runs out
            await sender.submit(outgoing(b"after %d" % n))
            await asyncio.sleep(0.005)
            if flushed.done():
                break
        assert flushed.done()
        assert sender.pending_bytes > 0  # records submitted after the flush still wait
        return [v for *_, records, _ in kafka.batches for _, v in records]

    assert asyncio.run(scenario())[0] == b"before"


def test_a_flush_with_everything_handed_over_returns_at_once():
    sender = Sender(SimpleNamespace(producer=None), {})
    asyncio.run(asyncio.wait_for(sender.flush(), 1))


def test_acknowledged_batches_of_a_batch_agents_topic_are_handed_to_it_with_their_offsets(
        monkeypatch):
    """The worker's own profile inputs go to its profile agent once acknowledged (see
    topology.machinery.batches, "Our own records without a fetch"): each record batch with the
    offset it was written at, its records in order and their timestamps; other topics' not."""
    monkeypatch.setattr(sending, "stop_worker", lambda reason, exc=None: None)
    kafka = FakeKafka(partitions=1, room=2)
    sender = Sender(SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: kafka)),
                    {"profile-inputs": "app.profile-inputs"})
    handed = []
    sender.hand_off = lambda *batch: handed.append(batch)
    sender.hand_off_topics = {"app.profile-inputs"}
    outgoing = sending.Outgoing()
    for i in range(3):
        outgoing.add("profile-inputs", b"u1", b"input%d" % i)
    outgoing.add("segment-changes", b"u1", b"change")

    async def scenario():
        await sender.submit(outgoing)
        await sender.flush()
        inputs = [b for b in kafka.batches if b[0] == "app.profile-inputs"]
        for n, (*_, future) in enumerate(inputs):
            future.set_result(SimpleNamespace(offset=40 + 2 * n))
        for topic, *_, future in kafka.batches:
            if topic != "app.profile-inputs":
                future.set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert handed == [
        ("app.profile-inputs", 0, 40, [(b"u1", b"input0"), (b"u1", b"input1")], [1001, 1002]),
        ("app.profile-inputs", 0, 42, [(b"u1", b"input2")], [1001]),
    ]
