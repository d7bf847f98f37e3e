"""Sending a bad input to the dead-letter topic, with its original bytes and the reason."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, sender, codec, stats) -> None:
        self.sender = sender
        self.codec = codec
        self.stats = stats

    async def send(self, message, code: str, reason: str) -> None:
        self.stats.dead_letters[code] += 1
        log.warning("dead letter %s[%d]@%d %s: %s", message.topic, message.partition,
                    message.offset, code, reason)
        await self.sender.send("dead-letters", message.key, self.codec.encode({
            "reason_code": code,
            "reason": reason,
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "key": message.key,
            "value": message.value,
            "timestamp": int(message.timestamp * 1000),
        }))
