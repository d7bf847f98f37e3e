"""Sending a bad input to the dead-letter topic, with its original bytes and the reason."""
from __future__ import annotations

import logging

from topology.machinery.sending import Outgoing

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, codec, stats) -> None:
        self.codec = codec
        self.stats = stats

    def add(self, outgoing: Outgoing, record, code: str, reason: str) -> None:
        """Add the dead letter of `record` (an aiokafka ConsumerRecord) to a batch's records:
        it is in Kafka before the input's offset is committed."""
        self.stats.dead_letters[code] += 1
        log.warning("dead letter %s[%d]@%d %s: %s", record.topic, record.partition,
                    record.offset, code, reason)
        outgoing.add("dead-letters", record.key, self.codec.encode({
            "reason_code": code,
            "reason": reason,
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key": record.key,
            "value": record.value,
            "timestamp": record.timestamp,  # ms, as Kafka keeps it
        }))
