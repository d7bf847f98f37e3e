"""Avro single-object encoding with fastavro: C3 01, the writer schema's CRC-64-AVRO
fingerprint (8 bytes, little-endian), then the Avro binary body.

A reader resolves the writer's schema (found by fingerprint among every known version) against
its own, so records written with an older or newer compatible schema still decode.
"""
from __future__ import annotations

import json
from io import BytesIO

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import SchemaVersion, by_fingerprint, current

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8


class CodecError(ValueError):
    """A record could not be encoded or decoded; names the topic and the problem."""

    def __init__(self, topic: str, problem: str) -> None:
        super().__init__(f"topic {topic}: {problem}")
        self.topic = topic
        self.problem = problem


class AvroCodec:
    """Encodes and decodes the records of one topic with one reader/writer schema."""

    def __init__(
        self,
        schema_name: str,
        topic: str,
        *,
        schema: SchemaVersion | None = None,
        known: dict[bytes, SchemaVersion] | None = None,
    ) -> None:
        # `schema` and `known` stand in for the files in schemas/ (evolution tests).
        self.schema: SchemaVersion = schema or current(schema_name)
        self.topic = topic
        self._known = known if known is not None else by_fingerprint()
        self._header = MAGIC + self.schema.fingerprint

    def encode(self, record: dict) -> bytes:
        buf = BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self.schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise CodecError(
                self.topic, f"record does not match schema {self.schema.full_name}: {exc}"
            ) from exc
        return buf.getvalue()

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The writer schema named by a record's header."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(self.topic, f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_SIZE:
            raise CodecError(
                self.topic,
                f"record of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte "
                "single-object header",
            )
        if data[:2] != MAGIC:
            raise CodecError(
                self.topic,
                f"not Avro single-object encoding: first bytes {bytes(data[:2]).hex()} "
                f"instead of {MAGIC.hex()}",
            )
        fp = bytes(data[2:HEADER_SIZE])
        if fp == self.schema.fingerprint:
            return self.schema
        writer = self._known.get(fp)
        if writer is None:
            raise CodecError(
                self.topic,
                f"unknown writer schema fingerprint {fp[::-1].hex()} "
                f"(not among the schemas in schemas/)",
            )
        if writer.full_name != self.schema.full_name:
            raise CodecError(
                self.topic,
                f"record written with schema {writer.full_name}, "
                f"this topic carries {self.schema.full_name}",
            )
        return writer

    def projection(self, fields: tuple[str, ...]):
        """A decoder of only `fields` of this topic's records: the others are skipped, not
        built (about half the time for a full profile when few fields are needed)."""
        raw = json.loads(json.dumps(self.schema.parsed))  # a private copy
        raw["fields"] = [f for f in raw["fields"] if f["name"] in fields]
        missing = set(fields) - {f["name"] for f in raw["fields"]}
        if missing:
            raise ValueError(f"{self.schema.full_name} has no field {sorted(missing)}")
        reader = parse_schema(raw, named_schemas={})

        def decode(data: bytes) -> dict:
            buf = BytesIO(data)
            buf.seek(HEADER_SIZE)
            try:
                return schemaless_reader(buf, self.writer_of(data).parsed, reader)
            except CodecError:
                raise
            except Exception as exc:
                raise CodecError(self.topic, f"corrupt body: {type(exc).__name__}: {exc}") \
                    from exc
        return decode

    def decode(self, data: bytes) -> dict:
        writer = self.writer_of(data)
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            if writer is self.schema:
                record = schemaless_reader(buf, writer.parsed, None)
            else:
                record = schemaless_reader(buf, writer.parsed, self.schema.parsed)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, …
            raise CodecError(
                self.topic,
                f"corrupt {writer.full_name} body: {type(exc).__name__}: {exc}",
            ) from exc
        left = len(data) - buf.tell()
        if left:
            raise CodecError(
                self.topic,
                f"corrupt {writer.full_name} body: {left} bytes left over after the record",
            )
        return record
