"""Definitions (segments, deliveries, journeys) live on a compacted topic; every worker
follows it and swaps in the new set without a restart. Every journey version stays on the topic
(key journey:<id>:v<N>): a profile stays on the version it entered with. `apply_file` is what
`cjo apply` runs."""
from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cjo.kafka_io import read_to_end
from cjo.settings import Settings
from schemas.codec import AvroCodec
from state.definitions import DefinitionError, DefinitionSet, from_records, load_definitions, to_records

log = logging.getLogger(__name__)


def _codec(settings: Settings) -> AvroCodec:
    return AvroCodec("definition", settings.topic("definitions"))


async def read_all(settings: Settings) -> dict[str, dict]:
    """The latest Definition record per key, read from the beginning to the current end."""
    consumer = _consumer(settings)
    await consumer.start()
    try:
        latest: dict[str, dict] = {}
        async for records in read_to_end(consumer):
            _fold(records, _codec(settings), latest)
        return latest
    finally:
        await consumer.stop()


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(settings.topic("definitions"),
                            bootstrap_servers=settings.bootstrap_servers,
                            enable_auto_commit=False, auto_offset_reset="earliest")


def _fold(records, codec, latest: dict) -> None:
    for r in records:
        key = r.key.decode()
        if r.value is None:
            latest.pop(key, None)
        else:
            latest[key] = codec.decode(r.value)


def build(latest: dict[str, dict]) -> DefinitionSet:
    return from_records([(key, json.loads(d["body"])) for key, d in sorted(latest.items())])


class DefinitionsFollower:
    """Keeps `current` equal to the definitions topic; `ready` is set once caught up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: DefinitionSet = from_records([])
        self.versions: dict[str, int] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        codec = _codec(self.settings)
        consumer = _consumer(self.settings)
        await consumer.start()
        latest: dict[str, dict] = {}
        try:
            async for records in read_to_end(consumer):
                _fold(records, codec, latest)
            self._swap(latest)
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                if batches:
                    for records in batches.values():
                        _fold(records, codec, latest)
                    self._swap(latest)
        finally:
            await consumer.stop()

    def _swap(self, latest: dict[str, dict]) -> None:
        try:
            self.current = build(latest)
        except DefinitionError as exc:
            log.error("definitions on the topic do not validate; keeping the previous set:\n%s",
                      exc)
            return
        self.versions = {k: d["version"] for k, d in latest.items()}
        log.info("definitions: %d segments, %d deliveries, %d journeys",
                 len(self.current.segments), len(self.current.deliveries),
                 len(self.current.journeys))


async def apply_definitions(settings: Settings, source) -> list[tuple[str, int]]:
    """Validate `source` (YAML text or dict) against what is applied, then publish the items
    that changed; returns (key, new version) for each. Raises DefinitionError, changing
    nothing, when the definitions do not validate."""
    latest = await read_all(settings)
    existing = build(latest)
    merged = load_definitions(source, existing)
    codec = _codec(settings)
    now = int(time.time() * 1000)
    changed = []
    for key, body in to_records(merged, all_versions=True):
        kind, _, rest = key.partition(":")
        if kind == "journey" and ":" not in rest:
            continue  # journeys go under versioned keys, so every version stays on the topic
        old = latest.get(key)
        text = json.dumps(body, sort_keys=True)
        if old is not None and json.dumps(json.loads(old["body"]), sort_keys=True) == text:
            continue
        item_id, _, number = rest.partition(":v")
        version = int(number) if number else (old["version"] + 1 if old else 1)
        changed.append((key, codec.encode({"kind": kind, "id": item_id, "version": version,
                                           "body": text, "applied_at": now}), version))
    if changed:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for key, value, _ in changed:
                await producer.send_and_wait(settings.topic("definitions"), value,
                                             key=key.encode())
        finally:
            await producer.stop()
    return [(key, version) for key, _, version in changed]


def apply_file(settings: Settings, path: str) -> list[tuple[str, int]]:
    with open(path) as f:
        return asyncio.run(apply_definitions(settings, f.read()))
