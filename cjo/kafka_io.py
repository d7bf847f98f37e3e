"""Producing to and reading back from our topics with aiokafka (demo, tests, benchmarks)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from cjo.producer import SCHEMA, EventProducer
from schemas.codec import AvroCodec
from schemas.internal import codec_for


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: dict


async def produce(bootstrap: str, topic: str, schema: str | None, records) -> list[tuple[int, int]]:
    """Send (key, record) pairs in order, under the keys given and unchecked (tests send bad
    events on purpose): events through the producer API's encoding (cjo/producer.py), other
    records Avro-encoded with `schema`, or raw bytes when `schema` is None; returns the
    (partition, offset) each got."""
    codec = AvroCodec(schema, topic) if schema not in (None, SCHEMA) else None
    # One request in flight per partition keeps each key's records in the order sent.
    async with EventProducer(bootstrap, topic) as producer:
        positions: list[tuple[int, int]] = []
        batch = []
        for key, record in records:
            if schema == SCHEMA:
                batch.append(await producer.send(record, key=key, check=False))
            else:
                value = codec.encode(record) if codec else record
                batch.append(await producer.send_value(key, value))
            if len(batch) >= 1000:
                positions += [(m.partition, m.offset) for m in await asyncio.gather(*batch)]
                batch.clear()
        positions += [(m.partition, m.offset) for m in await asyncio.gather(*batch)]
        return positions


async def wait_until_caught_up(bootstrap: str, group: str, topics: list[str],
                               timeout: float = 120.0, alive=lambda: True) -> bool:
    """True once `group` has committed the end offset of every partition of `topics` (the
    worker has processed everything sent so far), checked twice in a row."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        described = await admin.describe_topics(topics)
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described
               for p in t["partitions"]]
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline and alive():
            try:
                ends = await consumer.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                await asyncio.sleep(0.3)  # e.g. the group coordinator is still being elected
                continue
            done = all((committed.get(tp).offset if committed.get(tp) else 0) >= ends[tp]
                       for tp in tps)
            streak = streak + 1 if done else 0
            if streak >= 2:
                return True
            await asyncio.sleep(0.3)
        return False
    finally:
        await consumer.stop()
        await admin.close()


async def read_to_end(consumer: AIOKafkaConsumer):
    """Yield batches of raw records from a started consumer (subscribed without a group)
    until it has reached the end offsets its partitions had when this began."""
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)  # no group: the consumer assigns every partition
    tps = list(consumer.assignment())
    ends = await consumer.end_offsets(tps)
    while True:
        behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        if not behind:
            return
        batches = await consumer.getmany(*behind, timeout_ms=500, max_records=5000)
        for records in batches.values():
            yield records


async def read_all(bootstrap: str, topic: str, schema: str | None) -> list[Read]:
    """Every record of the topic, from the beginning to its current end (decoded unless
    `schema` is None)."""
    codec = codec_for(schema, topic) if schema else None
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        out: list[Read] = []
        async for records in read_to_end(consumer):
            for r in records:
                value = r.value if codec is None or r.value is None else codec.decode(r.value)
                out.append(Read(r.partition, r.offset, r.key, value))
        return out
    finally:
        await consumer.stop()
