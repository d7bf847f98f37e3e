"""Faust codecs for our topics' records: one per record kind, registered under "cjo:<name>"."""
from __future__ import annotations

from faust.serializers import codecs


class FaustCodec(codecs.Codec):
    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    def _dumps(self, obj) -> bytes:
        return self.codec.encode(obj)

    def _loads(self, s: bytes):
        return self.codec.decode(s)


def register(name: str, codec) -> str:
    """Register `codec` (schemas.codec.AvroCodec or schemas.internal.InternalCodec) with Faust
    and return its serializer name."""
    name = f"cjo:{name}"
    codecs.register(name, FaustCodec(codec))
    return name
