"""How the worker sends records: straight to the Kafka producer Faust holds, past Faust's
per-record channel machinery, and never silently lost.

Two ways in:

- `send` (timers, the odd record): one record, partitioned by the producer.
- `submit` (the batch agents): every record one batch of inputs made (outputs, profile inputs,
  changelog records, dead letters), in order. A background task packs them into one Kafka
  record batch per topic partition (aiokafka's `send_batch`: one future per batch instead of
  one per record, which the producer's sender would otherwise resolve one by one) and queues
  them, batch after batch, so the order of a partition's records is the order they were
  submitted. Keys are partitioned as the producer does (murmur2 of the key), unless the record
  names its partition (changelogs are co-partitioned with their input).

Faust flushes this producer before it commits (topology.machinery.faust_fixes.App), and that flush
first waits for every record submitted until then to be handed to the producer (`flush`; Faust
takes the offsets to commit before it flushes): a record an input made is in Kafka before the
input's offset is committed. A record the broker refuses in the end (retries exhausted) stops
the worker before anything more is committed: its input is processed again after the restart."""
from __future__ import annotations

import asyncio
from random import randrange
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Container

from aiokafka.structs import TopicPartition
from murmurhash2 import murmurhash2

from topology.machinery.faust_fixes import stop_worker

# Bytes (keys and values) submitted but not yet in the producer's hands before `submit` holds
# the agents back. Bounded in bytes, not batches: at the end of a catch-up, merges release the
# inputs their members held and batches grow large; 64 queued batches then cost the worker
# 100-170 MB at its peak (bench.pipeline at a million profiles).
MAX_PENDING_BYTES = 8 << 20


# The seed of Kafka's murmur2 (Java's Utils.murmur2, aiokafka's and librdkafka's murmur2).
MURMUR2_SEED = 0x9747B28C


def key_hash(key: bytes) -> int:
    """Kafka's default partitioner's hash of a key (murmur2, made positive), as aiokafka's
    pure-Python `murmur2` computes it, in compiled code: 0.3 µs a key against 3.5."""
    return murmurhash2(key, MURMUR2_SEED) & 0x7FFFFFFF


@dataclass
class Outgoing:
    """The records one batch of inputs made, in the order they were made."""
    records: list = field(default_factory=list)  # (topic, partition | None, key, value)
    size: int = 0  # bytes of the keys and values
    # Called with (topic, partition, last offset) when a batch of `topic` is acknowledged.
    on_sent: dict[str, Callable[[str, int, int], None]] = field(default_factory=dict)

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            partition: int | None = None) -> None:
        self.records.append((topic, partition, key, value))
        self.size += (len(key) if key else 0) + (len(value) if value else 0)


class Sender:
    def __init__(self, app, topic_names: dict[str, str]) -> None:
        self.app = app
        self.topic_names = topic_names  # our topic name -> the Kafka topic's
        self.queue: deque[Outgoing] = deque()
        self.wakeup = asyncio.Event()
        self.submitted = 0  # batches of records submitted so far
        self.handed = 0  # of those, handed to the producer (they go in submission order)
        self.flushes: list[tuple[int, asyncio.Future]] = []  # (submitted, waiting flush)
        self.pending_bytes = 0  # submitted, not yet handed to the producer
        self.task: asyncio.Task | None = None
        # Told of every acknowledged record batch of the topics in `hand_off_topics` (Kafka
        # names): (topic, partition, base offset, [(key, value)], [timestamp ms]). The batch
        # agents (topology.machinery.batches) apply their own topic's records without a fetch.
        self.hand_off: Callable[[str, int, int, list, list], None] | None = None
        self.hand_off_topics: Container[str] = ()

    def kafka_topic(self, topic: str) -> str:
        return self.topic_names.get(topic, topic)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        sent = await self.app.producer.send(self.kafka_topic(topic), key, value, None, None,
                                            None)
        sent.add_done_callback(self._delivered)

    async def submit(self, outgoing: Outgoing) -> None:
        """Queue a batch's records; they go out in the background, in order."""
        if not outgoing.records:
            return
        self.queue.append(outgoing)
        self.submitted += 1
        self.pending_bytes += outgoing.size
        self.wakeup.set()
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        while self.pending_bytes > MAX_PENDING_BYTES:  # the producer is behind: hold back
            await asyncio.sleep(0.001)

    async def flush(self) -> None:
        """Wait until every record submitted so far is in the producer's hands. Not until the
        queue is empty: under a steady flow of input it seldom is, and a commit waiting for
        that waited up to 2 s (bench.pipeline at half the worker's rate)."""
        if self.handed >= self.submitted:
            return
        waiting = asyncio.get_running_loop().create_future()
        self.flushes.append((self.submitted, waiting))
        await waiting

    async def _run(self) -> None:
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.queue:
                    taken = list(self.queue)  # everything submitted meanwhile: one round
                    self.queue.clear()
                    await self._send_round(taken)
                    self.pending_bytes -= sum(o.size for o in taken)
                    self.handed += len(taken)
                    self._release_flushes()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the records would be lost: stop before committing
            stop_worker(f"records could not be handed to the producer: {exc!r}", exc)

    def _release_flushes(self) -> None:
        waiting = []
        for target, flushed in self.flushes:
            if target > self.handed:
                waiting.append((target, flushed))
            elif not flushed.done():
                flushed.set_result(None)
        self.flushes = waiting

    async def _send_round(self, taken: list[Outgoing]) -> None:
        """One record batch per partition (more if one fills up) for all of `taken`, each
        partition's in submission order; the partitions go out side by side (the producer
        lets one batch per partition wait for the one before it)."""
        producer = self.app.producer._ensure_producer()  # aiokafka's, inside Faust's
        partitions: dict[str, int] = {}
        by_tp: dict[tuple[str, int], list] = {}
        on_sent: dict[str, Callable] = {}
        for outgoing in taken:
            on_sent.update(outgoing.on_sent)
            for topic, partition, key, value in outgoing.records:
                name = self.kafka_topic(topic)
                if partition is None:
                    n = partitions.get(name)
                    if n is None:
                        await producer.client._wait_on_metadata(name)
                        n = partitions[name] = len(producer.client.cluster
                                                   .partitions_for_topic(name))
                    # The producer's own partitioner: murmur2 of the key, any without one
                    partition = randrange(n) if key is None else key_hash(key) % n
                by_tp.setdefault((name, partition), []).append((key, value))
        # A partition whose batch can join the producer's queue at once is queued here; only
        # those that must wait (a batch of theirs still queued, or more than one batch's
        # worth) get a task of their own. A task per partition cost about as much as the
        # rest of the round: at a moderate flow most rounds carry a record or two for each
        # of dozens of partitions.
        queued = producer._message_accumulator._batches  # aiokafka: tp -> batches not sent
        waiting = []
        for tp, records in by_tp.items():
            built = self._build(producer, records, tp[0] in self.hand_off_topics)
            if len(built) == 1 and not queued.get(TopicPartition(*tp)):
                await self._queue_batch(producer, tp, built[0], on_sent.get(tp[0]))
            else:
                waiting.append(self._queue_batches(producer, tp, built, on_sent.get(tp[0])))
        if waiting:
            await asyncio.gather(*waiting)

    @staticmethod
    def _build(producer, records: list, stamped: bool) -> list[tuple]:
        """Record batches holding `records` in order: (builder, its records, their timestamps
        if `stamped`, else None)."""
        built, start = [], 0
        builder, stamps = producer.create_batch(), [] if stamped else None
        for i, (key, value) in enumerate(records):
            appended = builder.append(timestamp=None, key=key, value=value, headers=[])
            if appended is None:  # full
                built.append((builder, records[start:i], stamps))
                builder, stamps, start = producer.create_batch(), [] if stamped else None, i
                appended = builder.append(timestamp=None, key=key, value=value, headers=[])
            if stamped:
                stamps.append(appended.timestamp)
        built.append((builder, records[start:], stamps))
        return built

    async def _queue_batches(self, producer, tp, built: list, on_sent) -> None:
        for batch in built:
            await self._queue_batch(producer, tp, batch, on_sent)

    async def _queue_batch(self, producer, tp, batch: tuple, on_sent) -> None:
        builder, records, stamps = batch
        builder.close()
        sent = await producer.send_batch(builder, tp[0], partition=tp[1])
        hand_off = self.hand_off if stamps is not None else None

        def delivered(future) -> None:
            self._delivered(future)
            if future.cancelled() or future.exception() is not None:
                return
            base = future.result().offset
            if on_sent is not None:
                on_sent(tp[0], tp[1], base + len(records) - 1)
            if hand_off is not None:
                hand_off(tp[0], tp[1], base, records, stamps)

        sent.add_done_callback(delivered)

    @staticmethod
    def _delivered(sent) -> None:
        if sent.cancelled() or sent.exception() is None:
            return
        stop_worker(f"a record was not delivered: {sent.exception()!r}", sent.exception())
