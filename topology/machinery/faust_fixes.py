"""Where Faust itself falls short of our promises, fixed at the narrowest point.

- Faust flushes its producer before it commits offsets, so that everything an event produced is
  in Kafka before the event counts as done. But the producer's buffer (where table changelog
  records wait) gives up flushing after 0.1 s without a send and returns with records still
  queued (`ProducerBuffer.flush_atmost`); the commit then goes ahead. `App` drains the buffer
  completely instead.
- An exception inside an agent makes Faust log it, ack the event and restart the agent: the
  event is dropped. `fail_stop` ends the worker at once instead, without committing, so that the
  event is processed again after the restart (processing is idempotent).
- After a rebalance Faust resumes the input partitions and only then seeks them back to their
  committed offsets, with records flowing: records fetched in between are delivered to the
  agents' queues (which the end of the rebalance then empties), and the rest of a batch fetched
  before the seek is still delivered after it. Faust takes the jump from the committed offset
  to that batch for a gap in the topic (as after compaction) and counts the records in it as
  done: they were never applied, and their offsets are committed (seen after a restart with an
  empty RocksDB directory: dozens of inputs lost per partition). `App` stops the flow of
  records before that seek; Faust resumes it after emptying the queues, so reading starts
  again at the committed offset.
- Faust has the broker hold a fetch for up to 1.5 s (`FETCH_MAX_WAIT_MS` below says why that
  stalls a two-hop worker); `App` makes it 20 ms, and has the broker answer sooner only once
  16 KiB are there (`FETCH_MIN_BYTES`); after a second without records, fetches wait longer
  and end at the first record (topology.machinery.fetch_pacing).
- Faust counts an offset commit that the broker refused (after `UnknownMemberIdError`, the
  group rebalanced) as done, and commits a partition again only when its offset moves: the
  broker never gets it, and lag and "caught up" stay wrong until new input comes. `App` takes a
  refused commit back, so the next commit interval tries again (until the broker has it or the
  partition is revoked), and what Faust shows as committed is what the broker has.
- A worker that stood still past its session timeout may have lost its partitions without
  knowing it: `App` keeps a membership lease (topology.machinery.membership) and stops before
  it writes anything after the lease ran out.
- Faust's seek back to the committed offsets fails (and crashes the worker) when a rebalance
  takes a partition away while it runs; `App` lets the rebalance's own seek do the work.
- `InputOrder` makes any such jump fatal rather than silent: an agent applies the records of a
  partition only in offset order, without holes, or the worker stops without committing and
  its restart reads the partition again from the committed offset.
"""
from __future__ import annotations

import asyncio
import logging
import os

import faust
from aiokafka.errors import IllegalStateError
from functools import cached_property

from topology.machinery.batches import BatchDelivery
from topology.machinery.fetch_pacing import FetchPacing
from topology.machinery.membership import MembershipLease

log = logging.getLogger(__name__)

# How long the broker may hold a fetch with no new records. Faust fixes 1.5 s, and aiokafka has
# one fetch in flight per broker, for the partitions with nothing buffered at the time: a fetch
# for quiet partitions then keeps the busy ones (events, and the profile inputs the identity
# step is making of them) from being fetched again until it returns. Two hops in one consumer
# made that a stall of up to 1.5 s every few seconds; 20 ms bounds it (an idle worker's fetches
# wait longer: topology.machinery.fetch_pacing). The default of `CJO_FETCH_WAIT_MS` (cjo.settings):
# a shorter wait lowers latency at a moderate flow and costs CPU, about 1 ms per fetch (aiokafka
# encodes and decodes every assigned partition of every fetch in Python).
FETCH_MAX_WAIT_MS = 20
# How much the broker waits for (up to FETCH_MAX_WAIT_MS) before it answers a fetch. With 1
# byte (Faust's and aiokafka's default) every record that arrives ends a fetch: at a moderate
# flow each event went through both hops in fetches of its own, each a round of wake-ups of
# the consumer's thread, the event loop, both agents and the sender. 16 KiB gathers what
# comes within the wait (a few dozen events) and changes nothing at full rate: the paced
# worker's CPU per event fell by a fifth to two fifths (a quarter of its rate in
# bench.pipeline; 300 events/s), and latency's p99 at a quarter rate fell with it; what it
# adds is at most one wait per hop at a low flow.
FETCH_MIN_BYTES = 16 * 1024


class App(faust.App):
    sender = None  # topology.machinery.sending.Sender, set by create_app
    fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # create_app sets it from the settings
    fetch_pacing = None  # topology.machinery.fetch_pacing.FetchPacing, once the consumer runs
    @cached_property
    def before_flush(self) -> list:
        """Coroutines run whenever Faust flushes the producer (before each commit, and before
        partitions are revoked), ahead of the flush itself."""
        return []

    @cached_property
    def membership(self) -> MembershipLease:
        """The lease that fences this worker's writes (topology.machinery.membership)."""
        return MembershipLease(self.conf.broker_session_timeout, on_expired=stop_worker)

    @cached_property
    def batches(self) -> BatchDelivery:
        """The batch agents (topology.machinery.batches), fed by the consumer's fetch loop."""
        return BatchDelivery(self, on_failure=stop_worker)

    def _new_producer(self):
        producer = super()._new_producer()
        buffer = producer.buffer

        async def drain() -> None:
            # e.g. write-back caches (topology.machinery.table_cache)
            for hook in self.before_flush:
                await hook()
            if self.sender is not None:
                await self.sender.flush()  # what batch agents submitted, before committing
            while buffer.size:
                await buffer.flush_atmost(None)

        buffer.flush = drain
        new_kafka_producer = producer._new_producer

        def fenced_kafka_producer(*args, **kwargs):
            kafka = new_kafka_producer(*args, **kwargs)
            self.membership.guard_producer(kafka.client)
            return kafka

        producer._new_producer = fenced_kafka_producer
        return producer

    def _new_consumer(self):
        consumer = super()._new_consumer()
        self.batches.install(consumer)
        seek = consumer.perform_seek

        async def perform_seek() -> None:
            # Every caller resumes the flow after it (Recovery does so after emptying the
            # agents' queues); the batch being delivered stops at the next record.
            consumer.stop_flow()
            await asyncio.sleep(0)
            try:
                await seek()
            except IllegalStateError as exc:
                # The assignment changed during the seek (it awaits the broker per
                # partition): a rebalance is under way, and its recovery seeks again. Faust
                # let this crash the fetcher, and the worker with it.
                log.info("seek to the committed offsets interrupted by a rebalance: %s", exc)

        consumer.perform_seek = perform_seek
        consumer._commit_offsets = commits_that_happen(consumer)

        thread = consumer._thread  # aiokafka's consumer lives in Faust's consumer thread
        create = thread._create_worker_consumer

        membership = self.membership

        def create_worker_consumer(transport):
            kafka = create(transport)
            kafka._fetch_max_wait_ms = self.fetch_max_wait_ms  # read when it starts its fetcher
            kafka._fetch_min_bytes = FETCH_MIN_BYTES
            start = kafka.start

            async def start_and_watch() -> None:
                await start()  # makes the group coordinator and the fetcher
                membership.watch_coordinator(kafka._coordinator)
                self.fetch_pacing = FetchPacing(kafka._fetcher).install()

            kafka.start = start_and_watch
            return kafka

        thread._create_worker_consumer = create_worker_consumer
        return consumer


def commits_that_happen(consumer):
    """Faust's `_commit_offsets`, except that offsets the broker refused are not taken as
    committed: the next commit tries them again."""
    commit_offsets = consumer._commit_offsets
    committed = consumer._committed_offset

    async def commit(offsets, start_new_transaction: bool = True) -> bool:
        before = {tp: committed.get(tp) for tp in offsets}
        done = await commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if not done:
            for tp, offset in before.items():
                if offset is None:
                    committed.pop(tp, None)
                else:
                    committed[tp] = offset
        return done

    return commit


def fail_stop(message, exc: BaseException) -> None:
    stop_worker(f"{message.topic}[{message.partition}]@{message.offset} could not be "
                f"completed: {exc!r}", exc)


def stop_worker(reason: str, exc: BaseException | None = None) -> None:
    """Ends the worker at once, without committing anything more."""
    log.critical("stopping the worker without committing: %s", reason, exc_info=exc)
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE; a supervisor restarts the worker


def committed_offset(app, tp) -> int | None:
    """The next offset to read of `tp` as Faust last committed it. Faust keeps it only in a
    private attribute: this is the one place that reads it for the agents."""
    return app.consumer._committed_offset.get(tp)


def stores_settled(app) -> bool:
    """True when no rebalance or table recovery is under way: only then may a timer read the
    tables' RocksDB stores directly (reading them opens a partition's database, which must not
    happen while Faust is still assigning and recovering it)."""
    return not app.rebalancing and app.tables.recovery.completed.is_set()


class InputOrder:
    """Checks that an agent sees each input partition's records in offset order without holes.

    The first record after an assignment must be the committed one; a record before the next
    expected one is a re-read after a seek (processing is idempotent). A hole ends the worker
    without committing (`fail_stop`), unless the records in it are gone from the log
    (retention), which is logged as an error. `markers` holes of that size are accepted: a
    topic written by transactional producers has one control record after each transaction."""

    def __init__(self, app, markers: int = 0) -> None:
        self.app = app
        self.markers = markers
        self.next: dict = {}
        app.on_partitions_revoked.connect(self._forget)

    def _forget(self, sender, revoked, **kwargs) -> None:
        for tp in revoked:
            self.next.pop(tp, None)

    def _expected(self, tp) -> int | None:
        expected = self.next.get(tp)
        return committed_offset(self.app, tp) if expected is None else expected

    async def check(self, tp, records: list) -> None:
        """Check a batch of `tp`'s records (aiokafka's, in fetch order) before it is applied."""
        for record in records:
            if not self.follows(tp, record.offset):
                await self.hole(tp, record)

    def follows(self, tp, offset: int) -> bool:
        """True (and noted) when the record at `offset` is the next one of `tp`."""
        expected = self._expected(tp)
        if expected is None or offset - expected <= self.markers:
            self.next[tp] = offset + 1
            return True
        return False

    async def hole(self, tp, record) -> None:
        """`record` came after a hole: stop, unless the records in the hole are gone."""
        offset = record.offset
        expected = self._expected(tp)
        earliest = (await self.app.consumer.earliest_offsets(tp)).get(tp)
        if earliest is not None and earliest >= offset:
            log.error("%s[%d]: records %d..%d were deleted from the log before they were "
                      "read (retention shorter than the backlog)", tp.topic, tp.partition,
                      expected, offset - 1)
            self.next[tp] = offset + 1
            return
        fail_stop(record, LookupError(
            f"records {expected}..{offset - 1} of {tp.topic}[{tp.partition}] were not "
            f"delivered"))
