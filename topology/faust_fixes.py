"""Where Faust itself falls short of our promises, fixed at the narrowest point.

- Faust flushes its producer before it commits offsets, so that everything an event produced is
  in Kafka before the event counts as done. But the producer's buffer (where table changelog
  records wait) gives up flushing after 0.1 s without a send and returns with records still
  queued (`ProducerBuffer.flush_atmost`); the commit then goes ahead. `App` drains the buffer
  completely instead.
- An exception inside an agent makes Faust log it, ack the event and restart the agent: the
  event is dropped. `fail_stop` ends the worker at once instead, without committing, so that the
  event is processed again after the restart (processing is idempotent).
"""
from __future__ import annotations

import logging
import os

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
