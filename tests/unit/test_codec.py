"""The Avro codec writes Avro's single-object encoding and reads it back with schema
resolution; every way a record can be wrong gives an error naming the topic and the problem."""
import json

import pytest

from schemas import SCHEMA_DIR, current, schema_version
from schemas.codec import HEADER_SIZE, MAGIC, AvroCodec, CodecError

EVENT = {
    "event_id": "e-1",
    "name": "view",
    "visitor_id": "v-1",
    "user_id": None,
    "time": 1_767_225_600_000,
    "request_id": "r-1",
    "values": {"path": "/search", "n": 3, "price": 9.5, "ok": True, "none": None},
}


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification defines it, written independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_helper_matches_the_specification_vector():
    # The Avro reference implementation's fingerprint of the schema "string".
    assert crc64_avro(b'"string"') == (-8142146995180207161) & 0xFFFFFFFFFFFFFFFF


def test_a_record_round_trips():
    codec = AvroCodec("event", "t.events")
    assert codec.decode(codec.encode(EVENT)) == EVENT


def test_header_is_marker_then_little_endian_fingerprint_of_the_canonical_form():
    codec = AvroCodec("event", "t.events")
    data = codec.encode(EVENT)
    assert data[:2] == MAGIC == b"\xc3\x01"
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(current("event").parsed).encode()
    assert data[2:HEADER_SIZE] == crc64_avro(canonical).to_bytes(8, "little")


def _error(codec, data) -> str:
    with pytest.raises(CodecError) as info:
        codec.decode(data)
    assert info.value.topic == "t.events"
    return str(info.value)


def test_unknown_fingerprint_is_named():
    codec = AvroCodec("event", "t.events")
    data = MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + codec.encode(EVENT)[HEADER_SIZE:]
    msg = _error(codec, data)
    assert msg.startswith("topic t.events: unknown writer schema fingerprint 0807060504030201")


def test_wrong_marker_is_named():
    msg = _error(AvroCodec("event", "t.events"), b'{"json": "is not avro"}')
    assert "not Avro single-object encoding: first bytes 7b22" in msg


def test_short_record_is_named():
    msg = _error(AvroCodec("event", "t.events"), b"\xc3\x01\x00")
    assert "3 bytes is shorter than the 10-byte single-object header" in msg


def test_truncated_body_is_corrupt():
    codec = AvroCodec("event", "t.events")
    data = codec.encode(EVENT)
    msg = _error(codec, data[: len(data) - 5])
    assert "corrupt cjo.Event body" in msg


def test_trailing_bytes_are_corrupt():
    codec = AvroCodec("event", "t.events")
    msg = _error(codec, codec.encode(EVENT) + b"\x00\x00")
    assert "corrupt cjo.Event body: 2 bytes left over after the record" in msg


def test_invalid_union_branch_is_corrupt():
    codec = AvroCodec("event", "t.events")
    data = bytearray(codec.encode(EVENT))
    # The visitor_id union index sits after event_id and name; 0x7e is branch 63: no such branch.
    pos = HEADER_SIZE + 1 + len("e-1") + 1 + len("view")
    data[pos] = 0x7E
    assert "corrupt cjo.Event body" in _error(codec, bytes(data))


def test_record_of_another_schema_is_refused():
    changes = AvroCodec("segment_change", "t.changes")
    data = changes.encode({"change_id": "c", "profile_id": "u", "segment": "s",
                           "change": "entered", "time": 1, "caused_by": "e"})
    msg = _error(AvroCodec("event", "t.events"), data)
    assert "written with schema cjo.SegmentChange, this topic carries cjo.Event" in msg


def test_encoding_a_record_that_does_not_fit_names_topic_and_schema():
    codec = AvroCodec("event", "t.events")
    with pytest.raises(CodecError, match="topic t.events: record does not match schema cjo.Event"):
        codec.encode({**EVENT, "time": "yesterday"})


def _event_schema_without(*fields: str) -> dict:
    raw = json.loads((SCHEMA_DIR / "event.avsc").read_text())
    raw["fields"] = [f for f in raw["fields"] if f["name"] not in fields]
    return raw


def test_a_reader_resolves_an_older_writer_schema():
    old = schema_version(_event_schema_without("request_id", "values"), "event.v0")
    new = current("event")
    known = {old.fingerprint: old, new.fingerprint: new}
    writer = AvroCodec("event", "t.events", schema=old, known=known)
    reader = AvroCodec("event", "t.events", known=known)
    record = {k: v for k, v in EVENT.items() if k not in ("request_id", "values")}
    decoded = reader.decode(writer.encode(record))
    assert decoded == {**record, "request_id": None, "values": {}}


def test_an_older_reader_resolves_a_newer_writer_schema():
    old = schema_version(_event_schema_without("request_id", "values"), "event.v0")
    new = current("event")
    known = {old.fingerprint: old, new.fingerprint: new}
    old_reader = AvroCodec("event", "t.events", schema=old, known=known)
    decoded = old_reader.decode(AvroCodec("event", "t.events", known=known).encode(EVENT))
    assert decoded == {k: v for k, v in EVENT.items() if k not in ("request_id", "values")}
