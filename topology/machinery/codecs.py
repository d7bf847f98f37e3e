"""Faust codecs for our Avro topics: one per topic, registered under "avro:<topic>"."""
from __future__ import annotations

from faust.serializers import codecs

from schemas.codec import AvroCodec


class FaustAvroCodec(codecs.Codec):
    def __init__(self, avro: AvroCodec) -> None:
        super().__init__()
        self.avro = avro

    def _dumps(self, obj) -> bytes:
        return self.avro.encode(obj)

    def _loads(self, s: bytes):
        return self.avro.decode(s)


def register_avro(topic: str, schema: str) -> str:
    """Register the codec of `topic` with Faust and return its serializer name."""
    name = f"avro:{topic}"
    codecs.register(name, FaustAvroCodec(AvroCodec(schema, topic)))
    return name
