"""The rules an input event must follow before it reaches a profile; each broken rule has a
stable reason code, and the event goes to the dead-letter topic with it.

Keying rule: the producer keys an event by its visitor id when it carries one, else by its user
id; `identify` (visitor id and user id) is always keyed by the visitor id, so that the merge
travels through the visitor's partition after every earlier event of the visitor.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_EVENT_BYTES = 64 * 1024
MAX_FIELDS = 200
MAX_STRING = 8 * 1024
# Ids (event, visitor, user, request) become table keys, merge ids and output ids: 256
# characters hold any UUID, email or hashed id (Mixpanel and Segment cap ids near 255).
MAX_ID = 256
MIN_TIME = 946_684_800_000  # 2000-01-01: older event times are clock errors
# 3000-01-01: later times are clock errors whatever the record's timestamp says, and keep every
# time a journey computes from an event (waits of years) inside Avro's long.
MAX_TIME = 32_503_680_000_000
# Clock skew: an event's time may be at most one day after its record's timestamp
# (CJO_MAX_CLOCK_SKEW). A day lets through a client that sends local time as UTC (up to 14 h
# off) and a device clock a few hours wrong, and stops clocks that are plainly broken. The
# record timestamp is the producer's (CreateTime); the broker itself refuses records stamped
# more than an hour after its own clock (Kafka 4's message.timestamp.after.max.ms), so an
# event is accepted up to about 25 hours ahead of the broker's clock. Events in the past are
# accepted back to MIN_TIME: a late event counts, and is judged at its own time (README).
MAX_AHEAD = 86_400_000
# Every reason code check_size, check_framing and check_event give (the dead-letter topic's
# reason_code; the worker adds "undecodable" and "processing_error").
REASON_CODES = ("empty", "oversized", "confluent_wire_format", "missing_key", "bad_key",
                "missing_event_id", "id_too_long", "bad_name", "reserved_name", "missing_id",
                "bad_identify", "wrong_key", "time_too_old", "time_in_future",
                "too_many_fields", "bad_field", "value_too_long", "bad_value")
NAME = re.compile(r"(__)?[A-Za-z0-9][A-Za-z0-9_:-]{0,63}")  # used with fullmatch
RESERVED = {"identify", "attribute", "__metadata", "__wakeup"}
IDENTIFY = "identify"
METADATA = "__metadata"


@dataclass(frozen=True)
class Rejection:
    code: str
    reason: str


def check_size(value: bytes | None, limit: int = MAX_EVENT_BYTES) -> Rejection | None:
    if value is None or len(value) == 0:
        return Rejection("empty", "the record has no value")
    if len(value) > limit:
        return Rejection("oversized", f"{len(value)} bytes is over the limit of {limit} bytes")
    return None


def check_framing(value: bytes) -> Rejection | None:
    """Names the framing of a record the codec could not read when it is Confluent Schema
    Registry's wire format (byte 0, a 4-byte big-endian schema id, the body): what most Kafka
    shops send. A single-object record starts with C3 01, never with 0."""
    if len(value) < 5 or value[0] != 0:
        return None
    schema_id = int.from_bytes(value[1:5], "big")
    return Rejection(
        "confluent_wire_format",
        f"Confluent Schema Registry wire format (magic byte 0, schema id {schema_id}); this "
        "topic takes Avro single-object encoding (C3 01, the writer schema's CRC-64-AVRO "
        "fingerprint, the body) with the schemas in schemas/: see docs/producers.md",
    )


def check_event(key: bytes | None, event: dict, record_timestamp: int,
                max_ahead: int = MAX_AHEAD) -> Rejection | None:
    """Rules on a decoded event; None when it may be processed. `max_ahead` (ms) is how far
    the event's time may be after the record's timestamp (the allowed clock skew)."""
    if key is None:
        return Rejection("missing_key", "the record has no key (expected the visitor or user id)")
    try:
        key_text = key.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection("bad_key", "the key is not UTF-8")
    if not event["event_id"]:
        return Rejection("missing_event_id", "event_id is empty")
    for id_field in ("event_id", "visitor_id", "user_id", "request_id"):
        value = event[id_field]
        if value is not None and len(value) > MAX_ID:
            return Rejection("id_too_long",
                             f"{id_field} is {len(value)} characters, at most {MAX_ID}")
    name = event["name"]
    if not NAME.fullmatch(name):
        return Rejection("bad_name", f"event name {name[:80]!r} is not 1-64 letters, digits, _ : -")
    if name.startswith("__") and name not in RESERVED:
        return Rejection("reserved_name", f"event names starting with __ are reserved: {name!r}")
    if name == "__wakeup":
        return Rejection("reserved_name", "__wakeup events are made by the engine, not producers")
    visitor, user = event["visitor_id"], event["user_id"]
    if not visitor and not user:
        return Rejection("missing_id", "the event has neither visitor_id nor user_id")
    if name == IDENTIFY and not (visitor and user):
        return Rejection("bad_identify", "identify needs both visitor_id and user_id")
    expected = visitor or user
    if key_text != expected:
        return Rejection(
            "wrong_key",
            f"key {key_text[:80]!r} is not the event's visitor_id (or user_id when there is "
            f"no visitor_id) {expected!r}",
        )
    t = event["time"]
    if t < MIN_TIME:
        return Rejection("time_too_old", f"event time {t} is before 2000-01-01")
    if t > MAX_TIME:
        return Rejection("time_in_future", f"event time {t} is after 3000-01-01")
    if t > record_timestamp + max_ahead:
        return Rejection(
            "time_in_future",
            f"event time {t} is more than {max_ahead} ms (the allowed clock skew) after the "
            f"record's timestamp {record_timestamp}",
        )
    values = event["values"]
    if len(values) > MAX_FIELDS:
        return Rejection("too_many_fields", f"{len(values)} values, at most {MAX_FIELDS}")
    for field, value in values.items():
        if not NAME.fullmatch(field):
            return Rejection("bad_field", f"field name {field[:80]!r} is not 1-64 letters, digits, _ : -")
        if isinstance(value, str) and len(value) > MAX_STRING:
            return Rejection("value_too_long", f"field {field!r} is {len(value)} characters, at most {MAX_STRING}")
        if isinstance(value, float) and not math.isfinite(value):
            return Rejection("bad_value", f"field {field!r} is {value}, not a finite number")
    return None


def canonical_id(event: dict) -> str:
    """The profile an event belongs to when no alias applies: the member if known."""
    return event["user_id"] or event["visitor_id"]
