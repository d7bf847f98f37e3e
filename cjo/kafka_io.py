"""Producing to and reading back from our topics with aiokafka (demo, tests, benchmarks)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.codec import AvroCodec


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: dict


async def produce(bootstrap: str, topic: str, schema: str, records) -> int:
    """Send (key, record) pairs in order, Avro-encoded; returns how many were sent."""
    codec = AvroCodec(schema, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = 0
        batch = []
        for key, record in records:
            batch.append(await producer.send(topic, codec.encode(record), key=key))
            sent += 1
            if len(batch) >= 1000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
        return sent
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, schema: str, expect: int, timeout: float = 60.0,
    alive=lambda: True,
) -> list[Read]:
    """Read the topic from the beginning until `expect` records arrived, `timeout` passed, or
    `alive()` (the process that writes the topic is still running) turns false."""
    codec = AvroCodec(schema, topic)
    # No group: the consumer takes every partition itself and starts from the beginning.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        out: list[Read] = []
        while len(out) < expect and time.monotonic() < deadline:
            if not alive():
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for r in records:
                    out.append(Read(r.partition, r.offset, r.key, codec.decode(r.value)))
        return out
    finally:
        await consumer.stop()
