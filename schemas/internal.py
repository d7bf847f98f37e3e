"""The worker's own records in msgpack: the profiles table's values and its changelog
(`<app>-profiles-changelog`), and the `<app>.profile-inputs` topic. Only the worker writes and
reads them (and the sidecar's archive, which reads profile-inputs with this module), and they
are most of what it encodes and decodes: msgpack's C extension encodes a profile about ten
times faster than fastavro, whose cost is a fixed dispatch per field and per value (issue 18).

A record is the two bytes CB 6D (never Avro's C3 01), a format version byte, then the record
as one msgpack map in the shape of its Avro schema (profile.avsc, profile_input.avsc), so it
decodes to the dict the Avro codec gives: str keys, lists for arrays, int for long, float for
double, bytes for bytes, absent fields with their defaults. The current version is the shape of
the schemas whose fingerprints FORMAT_SCHEMAS pins (a test fails when one changes and the
version does not). Version 1 lacks the profile's three `segments_*` fields (schemas/released/
profile.v3.avsc): it decodes with them at their defaults (null), which makes the profile's next
event judge every segment and set them. Version 2 (schemas/released/profile.v4.avsc) lacks
`sends` (the send times its frequency caps count): it decodes with none, so a profile's caps
count from its first activation after the upgrade. Version 3 (schemas/released/profile.v5.avsc)
lacks `event_ids` and `duplicates`: it decodes with no ids kept and none dropped, so an event
sent before the upgrade and again after it is applied twice. Version 4 (schemas/released/
profile.v6.avsc) lacks `merge_times` and `merge_crossings`: it decodes with none, so a merge
whose barrier came before the upgrade counts no event after it as crossing it. A record of an
unknown version is refused with a CodecError that names it.

Readers also decode the previous format, Avro single-object records (what the released worker
wrote: an upgraded worker reads the changelog and the topic it finds). Writers fall back to
Avro for a record whose msgpack would pass LARGE bytes: msgpack spends up to 1.7 times Avro's
bytes (field names in every record, 9-byte times), and the profile limits bound Avro's size
under Kafka's record size (README "Limits").

A profile input carries its event decoded (`event`: the dict the identity step decoded to check
it), so the profile agent does not decode it again; an Avro input's event bytes are decoded
here.
"""
from __future__ import annotations

import msgpack

from schemas.codec import MAGIC as AVRO_MAGIC, AvroCodec, CodecError

MAGIC = b"\xcb\x6d"
VERSION = 5
READABLE = frozenset({1, 2, 3, 4, VERSION})  # format versions decode reads (each a subset of the next)
HEADER = MAGIC + bytes([VERSION])
HEADER_SIZE = len(HEADER)
# Records whose msgpack is larger are written in Avro; any record at most this large fits in a
# Kafka record with room to spare (Faust's producer sends at most 1,000,000 bytes a request).
LARGE = 512 * 1024
# The schemas of the records VERSION writes (CRC-64-AVRO fingerprints, as on the Avro wire).
FORMAT_SCHEMAS = {"profile": "48f86ae3a6a81031", "profile_input": "3120c74425ab7d54"}
_REQUIRED = object()


class InternalCodec:
    """Encodes one record kind in the current format and decodes it in either format."""

    def __init__(self, schema_name: str, topic: str, *, large: int = LARGE) -> None:
        self.avro = AvroCodec(schema_name, topic)
        self.topic = topic
        self.large = large
        self.full_name = self.avro.schema.full_name
        fields = self.avro.schema.parsed["fields"]
        self._fields = {f["name"]: f.get("default", _REQUIRED) for f in fields}
        self._defaults = {k: v for k, v in self._fields.items() if v is not _REQUIRED}

    def encode(self, record: dict) -> bytes:
        if len(record) != len(self._fields):  # written whole: the reader takes the fast path
            record = self._whole(record)
        try:
            data = HEADER + msgpack.packb(record, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(self.topic, f"{self.full_name} not encodable: {exc}") from exc
        if len(data) > self.large:
            return self.avro.encode(self._to_avro(record))
        return data

    def decode(self, data: bytes) -> dict:
        if data[:2] == MAGIC and len(data) > HEADER_SIZE and data[2] in READABLE:
            try:
                record = msgpack.unpackb(data[HEADER_SIZE:])
            except Exception as exc:  # ExtraData, FormatError, ValueError, TypeError, …
                raise CodecError(self.topic, f"corrupt {self.full_name} msgpack body: "
                                             f"{type(exc).__name__} {exc}".rstrip()) from exc
            if record.__class__ is not dict or len(record) != len(self._fields):
                record = self._complete(record)
            return self._checked(record)
        if data[:2] == AVRO_MAGIC:
            return self._from_avro(self.avro.decode(data))
        raise CodecError(self.topic, self._not_ours(data))

    def projection(self, fields: tuple[str, ...]):
        """A decoder for readers that need only `fields`: msgpack has no cheaper way to them
        than the whole record (a third of the time of Avro's projection of a profile), so it
        returns the whole record; an Avro record is projected."""
        avro = self.avro.projection(fields)

        def decode(data: bytes) -> dict:
            if data[:2] == AVRO_MAGIC:
                return avro(data)
            return self.decode(data)
        return decode

    def _whole(self, record: dict) -> dict:
        missing = [name for name in self._fields
                   if name not in record and name not in self._defaults]
        if missing:
            raise CodecError(self.topic, f"{self.full_name} not encodable: no field {missing}")
        return {**self._defaults, **record}

    def _complete(self, record) -> dict:
        """The record with the schema's fields only, absent ones at their defaults."""
        if record.__class__ is not dict:
            raise CodecError(self.topic, f"corrupt {self.full_name} msgpack body: "
                                         f"a {type(record).__name__}, not a map")
        out = {}
        for name, default in self._fields.items():
            value = record.get(name, default)
            if value is _REQUIRED:
                raise CodecError(self.topic, f"corrupt {self.full_name} msgpack body: "
                                             f"no field {name!r}")
            out[name] = value.copy() if isinstance(value, (dict, list)) else value
        return out

    def _checked(self, record: dict) -> dict:
        return record

    def _from_avro(self, record: dict) -> dict:
        return record

    def _to_avro(self, record: dict) -> dict:
        return record

    def _not_ours(self, data) -> str:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return f"expected bytes, got {type(data).__name__}"
        head = bytes(data[:3])
        if head[:2] == MAGIC and len(data) <= HEADER_SIZE:
            return f"{self.full_name} record of {len(data)} bytes: no body after the header"
        if head[:2] == MAGIC:
            *others, last = [str(v) for v in sorted(READABLE)]
            known = f"{', '.join(others)} and {last}" if others else last
            return (f"{self.full_name} record in format version {head[2]}; this reader knows "
                    f"versions {known} (msgpack) and Avro single-object records: a newer "
                    "worker wrote it")
        return (f"neither format of {self.full_name}: first bytes {head[:2].hex()} (msgpack: "
                f"{MAGIC.hex()} and a version byte; Avro single-object: {AVRO_MAGIC.hex()}), "
                f"{len(data)} bytes")


class ProfileInputCodec(InternalCodec):
    """profile-inputs records: `event` is the decoded event (a dict), or None."""

    def __init__(self, topic: str, *, large: int = LARGE) -> None:
        super().__init__("profile_input", topic, large=large)
        self.events = AvroCodec("event", topic)
        kind = self.avro.schema.parsed["fields"][0]
        self._kinds = frozenset(kind["type"]["symbols"])

    def _checked(self, record: dict) -> dict:
        kind = record["kind"]
        if kind.__class__ is not str or kind not in self._kinds:  # as Avro's enum default
            record["kind"] = "unknown"
        return record

    def _from_avro(self, record: dict) -> dict:
        if record["event"] is not None:
            record["event"] = self.events.decode(record["event"])
        return record

    def _to_avro(self, record: dict) -> dict:
        if record.get("event") is None:
            return record
        return {**record, "event": self.events.encode(record["event"])}


def codec_for(schema: str, topic: str) -> AvroCodec | InternalCodec:
    """The codec of a topic's records of `schema` (a file stem in schemas/)."""
    if schema == "profile_input":
        return ProfileInputCodec(topic)
    if schema in FORMAT_SCHEMAS:
        return InternalCodec(schema, topic)
    return AvroCodec(schema, topic)
