"""Where Faust itself falls short of our promises, fixed at the narrowest point.

- Faust flushes its producer before it commits offsets, so that everything an event produced is
  in Kafka before the event counts as done. But the producer's buffer (where table changelog
  records wait) gives up flushing after 0.1 s without a send and returns with records still
  queued (`ProducerBuffer.flush_atmost`); the commit then goes ahead. `App` drains the buffer
  completely instead.
- An exception inside an agent makes Faust log it, ack the event and restart the agent: the
  event is dropped. `fail_stop` ends the worker at once instead, without committing, so that the
  event is processed again after the restart (processing is idempotent).
- Around a rebalance right after a restart, Faust can lose the acknowledgements of inputs it
  processed (seen after a restart with an empty RocksDB directory): the inputs after them are
  processed and acknowledged, but the committed offset stays behind the hole forever, since
  Faust commits only a contiguous run of acknowledged offsets. `CommitWatchdog` finds a hole
  that does not move and re-reads the partition from its committed offset; the inputs come
  again, the profile agent skips those it applied (idempotence) and applies any it had not,
  and the commit moves on.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict

import faust

log = logging.getLogger(__name__)


class App(faust.App):
    def _new_producer(self):
        producer = super()._new_producer()
        buffer = producer.buffer

        async def drain() -> None:
            while buffer.size:
                await buffer.flush_atmost(None)

        buffer.flush = drain
        return producer


def fail_stop(message, exc: BaseException) -> None:
    log.critical("stopping the worker without committing: %s[%d]@%d could not be completed: %r",
                 message.topic, message.partition, message.offset, exc, exc_info=exc)
    logging.shutdown()
    os._exit(70)  # EX_SOFTWARE; a supervisor restarts the worker


def stores_settled(app) -> bool:
    """True when no rebalance or table recovery is under way: only then may a timer read the
    tables' RocksDB stores directly (reading them opens a partition's database, which must not
    happen while Faust is still assigning and recovering it)."""
    return not app.rebalancing and app.tables.recovery.completed.is_set()


class CommitWatchdog:
    """Every `interval` seconds, per input partition: a hole at the head of the acknowledged
    offsets (the first acknowledged offset more than one past the committed one) that has not
    changed for `patience` looks is re-read from the committed offset."""

    interval = 5.0
    patience = 3

    def __init__(self, app, topics: set[str]) -> None:
        self.app = app
        self.topics = topics
        self.seen: dict = defaultdict(int)
        self.reread = 0

    async def tick(self) -> None:
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None or not stores_settled(self.app):
            return
        holes = {}
        for tp in self.app.assignor.assigned_actives():
            if tp.topic not in self.topics:
                continue
            acked = consumer._acked.get(tp)  # Faust's private bookkeeping
            committed = consumer._committed_offset.get(tp)
            if acked and committed is not None and min(acked) - committed > 1:
                holes[tp] = (committed, min(acked))
        self.seen = defaultdict(int, {k: v for k, v in self.seen.items()
                                      if k[0] in holes and holes[k[0]] == k[1]})
        for tp, hole in holes.items():
            self.seen[(tp, hole)] += 1
            if self.seen[(tp, hole)] >= self.patience:
                log.warning("commit of %s[%d] stuck at %d (next acknowledged %d): reading "
                            "the partition again from %d", tp.topic, tp.partition, hole[0],
                            hole[1], hole[0])
                del self.seen[(tp, hole)]
                self.reread += 1
                await consumer.seek(tp, hole[0])
