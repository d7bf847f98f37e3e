"""The Avro codecs of every topic, bundled for the domain (state.processing.Wire)."""
from __future__ import annotations

from cjo.settings import Settings
from schemas.codec import AvroCodec
from topology.pipeline import topics


class AvroWire:
    def __init__(self, settings: Settings, on_output=None) -> None:
        # Told of every output record the domain makes, once, when it is first encoded (a
        # resent copy reuses the bytes): the worker counts them by kind without decoding.
        self.on_output = on_output
        self.codecs = {spec.name: AvroCodec(spec.schema, settings.topic(spec.name))
                       for spec in topics.ALL}
        profiles, aliases, wakeups = topics.CHANGELOGS
        self.profile = AvroCodec("profile", profiles.topic_name(settings))
        self.alias = AvroCodec("alias", aliases.topic_name(settings))
        self.wakeup = AvroCodec("wakeup", wakeups.topic_name(settings))
        self._event = self.codecs["events"]
        self._input = self.codecs["profile-inputs"]

    def decode_event(self, data: bytes) -> dict:
        return self._event.decode(data)

    def encode_input(self, record: dict) -> bytes:
        return self._input.encode(record)

    def decode_input(self, data: bytes) -> dict:
        return self._input.decode(data)

    def encode_profile(self, profile: dict) -> bytes:
        return self.profile.encode(profile)

    def decode_profile(self, data: bytes) -> dict:
        return self.profile.decode(data)

    def encode_output(self, topic: str, record: dict) -> bytes:
        data = self.codecs[topic].encode(record)
        if self.on_output is not None:
            self.on_output(topic, record)
        return data
