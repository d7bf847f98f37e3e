"""Bad input never stops the pipeline: every kind of bad record lands in the dead-letter topic
with its original bytes, its position and a reason, while good events around it are processed,
and the worker counts dead letters by reason."""
from __future__ import annotations

import asyncio
import json
import time
from cjo.kafka_io import read_all
from cjo.web_client import get_json
from schemas.codec import AvroCodec
from tests.integration.harness import send_raw, table, wait_processed
from topology.pipeline.topics import ensure_topics

NOW = int(time.time() * 1000)


def event(**changes) -> dict:
    base = {"event_id": "bad", "name": "view", "visitor_id": "v-bad", "user_id": None,
            "time": NOW, "request_id": None, "values": {"path": "/"}}
    return {**base, **changes}


def test_every_kind_of_bad_input_is_dead_lettered(settings, workers):
    ensure_topics(settings)
    codec = AvroCodec("event", settings.topic("events"))
    good_event = codec.encode(event(event_id="x"))
    other_schema = AvroCodec("segment_change", "x").encode(
        {"change_id": "c", "profile_id": "p", "segment": "s", "change": "entered", "time": 1,
         "caused_by": "e"})
    bad = {  # expected reason code -> (key, value)
        "empty": (b"v-bad", b""),
        "oversized": (b"v-bad", codec.encode(event(values={"blob": "x" * 70_000}))),
        "undecodable/marker": (b"v-bad", json.dumps(event()).encode()),
        "undecodable/short": (b"v-bad", b"\xc3\x01\x00"),
        "undecodable/fingerprint": (b"v-bad", b"\xc3\x01" + b"\x00" * 8 + good_event[10:]),
        "undecodable/schema": (b"v-bad", other_schema),
        "undecodable/truncated": (b"v-bad", good_event[:-4]),
        "undecodable/trailing": (b"v-bad", good_event + b"\x00"),
        # Confluent Schema Registry's framing (byte 0, schema id 7) around the same body.
        "confluent_wire_format": (b"v-bad", b"\x00\x00\x00\x00\x07" + good_event[10:]),
        "missing_key": (None, codec.encode(event())),
        "bad_key": (b"\xff\xfe", codec.encode(event())),
        "missing_event_id": (b"v-bad", codec.encode(event(event_id=""))),
        "bad_name": (b"v-bad", codec.encode(event(name="page view"))),
        "reserved_name": (b"v-bad", codec.encode(event(name="__internal"))),
        "reserved_name/wakeup": (b"v-bad", codec.encode(event(name="__wakeup"))),
        "missing_id": (b"v-bad", codec.encode(event(visitor_id=None))),
        "bad_identify": (b"v-bad", codec.encode(event(name="identify"))),
        "wrong_key": (b"u-someone", codec.encode(event())),
        "time_too_old": (b"v-bad", codec.encode(event(time=86_400_000))),
        "time_in_future": (b"v-bad", codec.encode(event(time=NOW + 3 * 86_400_000))),
        "too_many_fields": (b"v-bad", codec.encode(event(values={f"f{i}": i for i in range(201)}))),
        "value_too_long": (b"v-bad", codec.encode(event(values={"q": "y" * 9000}))),
        "bad_field": (b"v-bad", codec.encode(event(values={"a b": 1}))),
        "bad_value": (b"v-bad", codec.encode(event(values={"price": float("nan")}))),
    }
    assert len({k.split("/")[0] for k in bad}) >= 15 and len(bad) >= 20
    records, expected = [], []
    for i, (kind, (key, value)) in enumerate(bad.items()):
        records.append((f"g{i}".encode(), codec.encode(event(event_id=f"good-{i}",
                                                             visitor_id=f"g{i}"))))
        records.append((key, value))
        expected.append(kind)
    records.append((b"g-last", codec.encode(event(event_id="good-last", visitor_id="g-last"))))
    positions = send_raw(settings, records)
    worker = workers(settings)
    wait_processed(settings, worker)

    letters = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("dead-letters"),
                                   "dead_letter"))
    assert len(letters) == len(bad), worker.log_tail()
    by_offset = {(r.value["source_partition"], r.value["source_offset"]): r.value for r in letters}
    for i, kind in enumerate(expected):
        key, value = records[2 * i + 1]
        letter = by_offset[positions[2 * i + 1]]
        assert letter["reason_code"] == kind.split("/")[0], (kind, letter["reason"])
        assert letter["value"] == value and letter["key"] == key, kind
        assert letter["source_topic"] == settings.topic("events")
        assert letter["reason"], kind

    # Every good event around the bad ones reached its profile.
    profiles = table(settings, "profiles", "profile")
    good_ids = {f"g{i}" for i in range(len(bad))} | {"g-last"}
    assert good_ids <= set(profiles)
    assert all(profiles[g]["counts"] == {"view": 1} for g in good_ids)

    confluent = by_offset[positions[2 * expected.index("confluent_wire_format") + 1]]
    assert "schema id 7" in confluent["reason"] and "docs/producers.md" in confluent["reason"]

    stats = get_json(settings, "/stats/")
    assert stats["dead_letters_total"] == len(bad)
    assert stats["dead_letters"]["undecodable"] == 6
    assert stats["dead_letters"]["reserved_name"] == 2
