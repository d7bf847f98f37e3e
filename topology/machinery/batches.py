"""Batch agents: the worker's two hot agents (identity, profiles) get each partition's fetched
records as one batch, straight from Faust's fetcher.

Faust delivers records one at a time: for each, its fetch loop waits on the conductor in a new
set of tasks, the conductor builds an Event and puts it in the agent's channel queue, the
stream takes it out, sets it as the current event and acks it. That costs 80-90 µs of CPU per
record for an agent that does nothing (issue 8's measurement), twice per event here: about ten
times the work the worker itself does per event. So for the topics of batch agents, the
fetcher's loop (`Consumer._drain_messages`, replaced here) hands every partition's records of
a fetch to the agent at once; records of every other topic (table changelogs during recovery
and for standbys) still go through Faust's conductor, one by one, as before.

What Faust keeps doing: group membership and rebalances, pausing and seeking partitions,
committing offsets, the tables (RocksDB stores, changelogs, recovery, standbys), timers and web
views. What this module adds to keep its promises with batches:

- **Commit only what was applied.** An agent's batch counts as done when the agent returns (its
  writes made and its records submitted to the producer); the offset after its last record is
  what Faust commits for the partition (`Consumer._new_offset`, for batch topics), so a batch
  is never half committed, and transaction markers between records need no special case.
- **Rebalances wait for the batch under way.** Faust stops the flow of records and waits for
  the agents before it revokes partitions (`Consumer.wait_empty`); the wait includes the batch
  under way, and no batch starts once the flow is stopped.
- **Offsets in order.** Records older than the partition's read position (a fetch that crossed a
  seek) are dropped as Faust drops them.
- **Our own records without a fetch.** When the worker's sender has a batch of records of a
  batch agent's topic acknowledged (the identity step's profile inputs, on the partition of the
  same number) and they are the next records the agent is to apply there (acknowledged at
  the offset after the last one it applied), the agent applies them at once
  (`hand_off`), as the fetched copies, at their offsets: the log and its order are the same,
  only the second hop no longer waits for a fetch (at a moderate flow the consumer's next
  fetch was already waiting at the broker when they arrived, for up to the fetch wait). Any
  other writer's record before them (a wake-up, an audience, another worker) makes a gap, and
  they come through the fetch as before. Their fetched copies are dropped.
- **No changelog record skipped.** Records fetched but not delivered because the flow stopped
  are read again: batch topics from their committed offsets (Faust's seek), table changelogs
  from the first record not delivered (`_rewind`). Faust seeks back only the partitions that
  have a committed offset, and a standby's changelog has none: a standby that skipped such
  records kept a table without them while its persisted offset moved past them, and on taking
  the partition over it served profiles that had lost their history.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import Awaitable, Callable

from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.types import TP

log = logging.getLogger(__name__)

# Records per batch at most: a fetch can bring thousands per partition, and nothing else runs
# while an agent works on a batch (timers, web views, commits).
MAX_BATCH = 500
# Seconds of agent work after which the fetch loop lets the rest of the worker run (timers, web
# views, commits, and the sender, which takes everything submitted meanwhile in one round of
# record batches). At a moderate flow a fetch brings a small batch per partition; a yield after
# each let the sender start a round for every third batch (bench.pipeline's paced phases), a
# round for every eight or nine once yields wait for 5 ms of work.
YIELD_AFTER = 0.005
# Records of our own waiting to be applied without a fetch, at most: past it the worker is
# behind (the identity step runs ahead of the profile agent while it catches up), and the
# fetch brings them, in larger batches, without holding their bytes twice.
MAX_HANDED = 1000

BatchAgent = Callable[[object, list], Awaitable[None]]  # (tp, aiokafka ConsumerRecords)


class BatchDelivery:
    def __init__(self, app, on_failure: Callable[[str, BaseException], None] | None = None
                 ) -> None:
        self.app = app
        # What a failed batch of a hand-off does (the fetch loop's failures stop Faust's
        # fetcher, and with it the worker): the worker stops without committing.
        self.on_failure = on_failure
        self.agents: dict[str, BatchAgent] = {}  # Kafka topic name -> agent
        self.ready: dict[str, asyncio.Event] = {}  # Kafka topic name -> what its agent awaits
        self.done: dict = {}  # tp -> offset after the last record of its last applied batch
        self.idle = asyncio.Event()
        self.idle.set()
        # One batch at a time, fetched or handed off: per partition in offset order.
        self.busy = asyncio.Lock()
        self.consumer = None
        # Records of our own, acknowledged, waiting to be applied: (tp, base offset, records,
        # timestamps, consumer generation); per tp, the offset after the last one waiting.
        self.handed: deque = deque()
        self.handed_records = 0  # in `handed`
        self.handed_next: dict = {}
        self.handed_upto: dict = {}  # tp -> offset after the last record applied from a hand-off
        self.hand_offs = 0  # batches applied so, for /stats/
        self.behind = False  # the last fetch left records in the log: no hand-offs
        self.yielded = monotonic()  # when the agents last let the rest of the worker run
        self._handing: asyncio.Task | None = None
        app.on_partitions_revoked.connect(self._forget)

    def agent(self, topic, ready: asyncio.Event | None = None
              ) -> Callable[[BatchAgent], BatchAgent]:
        """Register `fn(tp, records)` as the batch agent of a Faust topic; no batch is given to
        it before `ready` is set."""
        def register(fn: BatchAgent) -> BatchAgent:
            for name in topic.topics:
                self.agents[name] = fn
                if ready is not None:
                    self.ready[name] = ready
            self.app.topics.add(topic)  # the consumer subscribes to the conductor's topics
            return fn
        return register

    def _forget(self, sender, revoked, **kwargs) -> None:
        for tp in revoked:
            self.done.pop(tp, None)
            self.handed_next.pop(tp, None)
            self.handed_upto.pop(tp, None)

    def install(self, consumer) -> None:
        """Called with the consumer Faust makes (topology.machinery.faust_fixes.App)."""
        new_offset = consumer._new_offset
        wait_empty = consumer.wait_empty
        agents, done = self.agents, self.done

        def committable(tp):
            if tp.topic in agents:
                return done.get(tp)  # Faust commits it if newer than the committed offset
            return new_offset(tp)

        async def wait_for_agents() -> None:
            await self.idle.wait()  # the batch under way; none starts with the flow stopped
            await wait_empty()

        consumer._new_offset = committable
        consumer.wait_empty = wait_for_agents
        self.consumer = consumer
        consumer._drain_messages = lambda fetcher: self.drain(consumer, fetcher)

    async def drain(self, consumer, fetcher) -> None:
        """The fetcher's loop: what Faust's `_drain_messages` does, a partition's batch at a time
        for batch agents."""
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await consumer._wait_next_records(1.0)
                generation = self.app.consumer_generation_id
                await asyncio.sleep(0)  # a fetch may return at once, many times over
                if records is None or consumer.should_stop:
                    continue
                if not consumer.flow_active:
                    # As Faust's getmany: records fetched across a stop are read again from
                    # the committed offsets; changelogs from where their delivery stopped.
                    await consumer.perform_seek()
                    await self._rewind(consumer, records, generation)
                    continue
                await self._deliver(consumer, records, active, generation)
        except consumer.consumer_stopped_errors:
            if not self.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.app.should_stop:
                raise

    async def _deliver(self, consumer, records: dict, active, generation: int) -> None:
        read_offset = consumer._read_offset
        buffered = consumer._buffered_partitions
        monitor = self.app.monitor
        left = dict(records)  # what is not delivered yet
        behind = False
        for tp, batch in records.items():
            if not consumer.flow_active or self.app.consumer_generation_id != generation:
                # the flow stopped (a seek, or a rebalance began): the rest is read again
                await self._rewind(consumer, left, generation)
                return
            del left[tp]
            if active is not None and tp not in active and tp not in buffered:
                # paused after the fetch began (recovery pauses the standbys' changelogs
                # while it restores the active ones, then seeks and resumes them)
                await self._rewind(consumer, {tp: batch}, generation)
                continue
            highwater = consumer.highwater(tp)
            monitor.track_tp_end_offset(tp, highwater)
            if highwater is not None and highwater - batch[-1].offset > MAX_HANDED:
                behind = self.behind = True  # more waits in the log than this fetch brought
            since = read_offset.get(tp)
            if since is not None and batch[0].offset < since:
                batch = [r for r in batch if r.offset >= since]
                if not batch:
                    continue
            batch = self._not_handed(tp, batch)
            if not batch:
                continue  # without waiting for the hand-offs under way
            agent = self.agents.get(tp.topic)
            if agent is None:
                rest = await self._one_by_one(consumer, tp, batch)
                if rest:
                    await self._rewind(consumer, {tp: rest}, generation)
                continue
            ready = self.ready.get(tp.topic)
            if ready is not None and not ready.is_set():
                await ready.wait()  # not under way yet: a rebalance need not wait for this
                if not consumer.flow_active or self.app.consumer_generation_id != generation:
                    return
            await self._apply(consumer, tp, agent, batch, generation)
        # A catch-up: hand-offs would cut the agents' batches small (topology.machinery.batches)
        self.behind = behind

    async def _apply(self, consumer, tp, agent, batch: list, generation: int,
                     handed: bool = False) -> bool:
        """Give `batch` (tp's records in offset order) to its agent, MAX_BATCH at a time, and
        note each part as done. A handed-off batch is given only if it is still the next one
        (False if not)."""
        read_offset = consumer._read_offset
        async with self.busy:
            if handed and self.done.get(tp) != batch[0].offset:  # a fetched batch came first
                return False
            batch = self._not_handed(tp, batch)  # applied from a hand-off meanwhile
            for start in range(0, len(batch), MAX_BATCH):
                if not consumer.flow_active or self.app.consumer_generation_id != generation:
                    return False
                chunk = batch[start:start + MAX_BATCH]
                self.idle.clear()
                try:
                    await agent(tp, chunk)
                finally:
                    self.idle.set()
                self.done[tp] = chunk[-1].offset + 1
                consumer._acked[tp]  # Faust commits the partitions it has an ack list for
                read_offset[tp] = chunk[-1].offset
                if handed:  # their fetched copies are dropped
                    self.handed_upto[tp] = self.done[tp]
                if monotonic() - self.yielded >= YIELD_AFTER:
                    await asyncio.sleep(0)  # timers, web views and commits run between batches
                    self.yielded = monotonic()
            return True

    def _not_handed(self, tp, batch: list) -> list:
        """`batch` without the records a hand-off applied (their fetched copies)."""
        upto = self.handed_upto.get(tp)
        if upto is None or batch[0].offset >= upto:
            return batch
        return [r for r in batch if r.offset >= upto]

    def hand_off(self, topic: str, partition: int, base: int, records: list,
                 timestamps: list) -> None:
        """The sender had `records` ((key, value) pairs) acknowledged on `topic`[`partition`]
        from offset `base` on: if they are the next ones its batch agent is to apply, queue
        them for it. Called by the sender for every acknowledged batch."""
        if topic not in self.agents:
            return
        tp = TP(topic, partition)
        done = self.done.get(tp)
        expected = self.handed_next.get(tp)
        if expected is None or (done is not None and done > expected):
            expected = done  # none waiting (or the fetch went past them)
        if (expected != base or self.behind or self._fetched_past(tp, base)
                or self.handed_records + len(records) > MAX_HANDED):
            # not applied up to there yet (or not ours at all), or the worker is behind (a
            # catch-up: its last fetch left records in the log, or saw records of this
            # partition from there on, or many wait already): the fetch brings them, in
            # larger batches
            self.handed_next.pop(tp, None)
            return
        self.handed_next[tp] = base + len(records)
        self.handed_records += len(records)
        self.handed.append((tp, base, records, timestamps, self.app.consumer_generation_id))
        if self._handing is None or self._handing.done():
            self._handing = asyncio.ensure_future(self._apply_handed())

    def _fetched_past(self, tp, offset: int) -> bool:
        """Whether the consumer's last fetch of `tp` saw records at `offset` or later."""
        try:
            return (self.consumer.highwater(tp) or 0) > offset
        except Exception:  # not assigned any more (aiokafka asserts it): not ours to apply
            return True

    async def _apply_handed(self) -> None:
        try:
            await self._apply_handed_batches()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self.on_failure is None:
                raise
            self.on_failure(f"a handed-off batch failed: {exc!r}", exc)

    async def _apply_handed_batches(self) -> None:
        consumer = self.consumer
        while self.handed:
            tp, base, records, timestamps, generation = self.handed.popleft()
            self.handed_records -= len(records)
            ready = self.ready.get(tp.topic)
            if consumer is None or (ready is not None and not ready.is_set()):
                self.handed_next.pop(tp, None)  # the fetch brings them, and what follows
                continue
            # `_apply` checks the rest: still the next records, the flow on, the generation
            # they were acknowledged in
            batch = [ConsumerRecord(tp.topic, tp.partition, base + i, stamp, 0, key, value,
                                    None, len(key) if key else -1,
                                    len(value) if value else -1, [])
                     for i, ((key, value), stamp) in enumerate(zip(records, timestamps))]
            if await self._apply(consumer, tp, self.agents[tp.topic], batch, generation,
                                 handed=True):
                self.hand_offs += 1
            else:
                self.handed_next.pop(tp, None)

    async def _one_by_one(self, consumer, tp, batch: list) -> list:
        """Faust's own path (its conductor), for records of topics without a batch agent: table
        changelogs, read by recovery and standbys. Faust waits for each record's delivery or a
        suspension of the flow, with a set of new tasks per record; one such wait per batch
        keeps the same way out and makes restoring a table several times faster. Returns the
        records not delivered (the flow stopped)."""
        callback, to_message = consumer.callback, consumer._to_message
        read_offset = consumer._read_offset
        delivered = 0

        async def deliver() -> None:
            nonlocal delivered
            for record in batch:
                if not consumer.flow_active:
                    return
                await callback(to_message(tp, record))
                read_offset[tp] = record.offset
                delivered += 1

        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return batch[delivered:]

    async def _rewind(self, consumer, undelivered: dict, generation: int) -> None:
        """Seek each table changelog partition of `undelivered` (tp -> records fetched and not
        delivered) back to its first such record. Not once the generation changed: the new
        generation's recovery seeks every changelog partition to what its table holds. Within
        one generation records are fetched only from the positions recovery seeked to (Faust
        fetches nothing while the flow is stopped), so the rewind never skips ahead of them;
        and it is needed most there: recovery stops the flow to seek the input partitions right
        after it started reading the standbys' changelogs from their beginning."""
        read_offset = consumer._read_offset
        for tp, batch in undelivered.items():
            if tp.topic in self.agents or not batch:
                continue
            since = read_offset.get(tp)
            first = next((r.offset for r in batch if since is None or r.offset >= since), None)
            if first is None:
                continue
            if self.app.consumer_generation_id != generation:
                return
            try:
                await consumer.seek(tp, first)
            except IllegalStateError:  # not assigned any more
                continue
