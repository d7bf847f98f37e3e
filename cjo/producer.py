"""Producing events to an app's input topic (`<app>.events`) as the identity step accepts them.

    async with EventProducer.for_app(settings) as producer:
        await producer.send(make_event("view", visitor_id="v1", values={"path": "/"}))

`send` checks an event with the identity step's own rules (state/events.py: size, names, ids,
time, values, and the key), encodes it in Avro's single-object encoding with the event schema
in schemas/, keys it by its visitor id, else its user id, and hands it to aiokafka, whose
default partitioner is Java's (murmur2 of the key bytes), so a key lands on the partition a
Java producer would pick. A refused event raises `EventRefused` with the reason code the worker
would have dead-lettered it with. docs/producers.md is the guide for other languages.
"""
from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaProducer

from schemas.codec import AvroCodec, CodecError
from state.events import MAX_AHEAD, MAX_EVENT_BYTES, check_event, check_size

SCHEMA = "event"


class EventRefused(ValueError):
    """An event the worker would dead-letter. `code` is the dead-letter reason code
    (state/events.py REASON_CODES), or `schema_mismatch` for a dict the event schema cannot
    encode at all."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"event refused ({code}): {reason}")
        self.code = code
        self.reason = reason


def make_event(name: str, *, visitor_id: str | None = None, user_id: str | None = None,
               values: dict | None = None, time_ms: int | None = None,
               event_id: str | None = None, request_id: str | None = None) -> dict:
    """An event record (cjo.Event); a new UUID as event id and now as time unless given."""
    return {"event_id": event_id or str(uuid.uuid4()), "name": name, "visitor_id": visitor_id,
            "user_id": user_id, "time": _now_ms() if time_ms is None else time_ms,
            "request_id": request_id, "values": dict(values or {})}


def key_of(event: dict) -> bytes | None:
    """The key the identity step expects: the visitor id when the event has one, else the
    user id (an identify, which has both, goes under the visitor id). None without either."""
    chosen = event.get("visitor_id") or event.get("user_id")
    return chosen.encode() if chosen else None


class EventEncoder:
    """Checks and encodes events without sending them (no Kafka needed)."""

    def __init__(self, topic: str, *, max_event_bytes: int = MAX_EVENT_BYTES,
                 max_clock_skew_ms: int = MAX_AHEAD) -> None:
        self.codec = AvroCodec(SCHEMA, topic)
        self.max_event_bytes = max_event_bytes
        self.max_clock_skew_ms = max_clock_skew_ms

    def encode(self, event: dict, *, key: bytes | None = None,
               timestamp_ms: int | None = None) -> tuple[bytes, bytes, int]:
        """(key, value, record timestamp) of an event the worker accepts, or EventRefused.
        `key` defaults to `key_of(event)`; a key given is checked like any other. The record
        timestamp (default now) is the one the event's time is checked against: send the
        record with it."""
        if key is None:
            key = key_of(event) or b""  # no id at all: refused below as missing_id
        if timestamp_ms is None:
            timestamp_ms = _now_ms()
        try:
            value = self.codec.encode(event)
            decoded = self.codec.decode(value)  # what the identity step will check
        except CodecError as exc:
            raise EventRefused("schema_mismatch", exc.problem) from None
        rejected = check_size(value, self.max_event_bytes) or check_event(
            key, decoded, timestamp_ms, max_ahead=self.max_clock_skew_ms)
        if rejected is not None:
            raise EventRefused(rejected.code, rejected.reason)
        return key, value, timestamp_ms


class EventProducer:
    """Sends events to one input topic with aiokafka (acks=all; aiokafka's default murmur2
    partitioner). Records of one key keep the order of the `send` calls."""

    def __init__(self, bootstrap_servers: str, topic: str, *,
                 max_event_bytes: int = MAX_EVENT_BYTES, max_clock_skew_ms: int = MAX_AHEAD,
                 **options) -> None:
        self.topic = topic
        self.encoder = EventEncoder(topic, max_event_bytes=max_event_bytes,
                                    max_clock_skew_ms=max_clock_skew_ms)
        self._options = {"bootstrap_servers": bootstrap_servers, "acks": "all", "linger_ms": 5,
                         **options}
        self._producer: AIOKafkaProducer | None = None  # made in start(), inside the loop

    @classmethod
    def for_app(cls, settings, **options) -> "EventProducer":
        """A producer to `settings`' app, checking with the limits its workers apply."""
        return cls(settings.bootstrap_servers, settings.topic("events"),
                   max_event_bytes=settings.max_event_bytes,
                   max_clock_skew_ms=round(settings.max_clock_skew * 1000), **options)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> "EventProducer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def send(self, event: dict, *, key: bytes | None = None,
                   timestamp_ms: int | None = None, check: bool = True):
        """Queue one event; returns a future of its RecordMetadata (partition, offset). Raises
        EventRefused before sending anything when the worker would dead-letter it.
        `check=False` sends the event as given under `key` (tests that send bad events)."""
        if check:
            key, value, timestamp_ms = self.encoder.encode(event, key=key,
                                                           timestamp_ms=timestamp_ms)
        else:
            value = self.encoder.codec.encode(event)
        return await self._producer.send(self.topic, value, key=key, timestamp_ms=timestamp_ms)

    async def send_value(self, key: bytes | None, value: bytes):
        """Queue a record as raw bytes, unchecked (a test's or the demo's bad records)."""
        return await self._producer.send(self.topic, value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()


def _now_ms() -> int:
    return int(time.time() * 1000)
