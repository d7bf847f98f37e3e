"""The codecs of every topic, bundled for the domain (state.processing.Wire): Avro for the
records others read, msgpack for the worker's own (profiles, profile inputs: schemas.internal)."""
from __future__ import annotations

from cjo.settings import Settings
from schemas.internal import codec_for
from topology.pipeline import topics


class WorkerWire:
    def __init__(self, settings: Settings, on_output=None, generation: str | None = None) -> None:
        # The instance part of output ids (state.output_ids): the topic generation the worker
        # read at startup (topology.pipeline.topics.generation), else the app id.
        self.generation = generation or settings.app_id
        # Told of every output record the domain makes, once, when it is first encoded (a
        # resent copy reuses the bytes): the worker counts them by kind without decoding.
        self.on_output = on_output
        self.codecs = {spec.name: codec_for(spec.schema, settings.topic(spec.name))
                       for spec in topics.ALL}
        profiles, aliases, wakeups = topics.CHANGELOGS
        self.profile = codec_for("profile", profiles.topic_name(settings))
        self.alias = codec_for("alias", aliases.topic_name(settings))
        self.wakeup = codec_for("wakeup", wakeups.topic_name(settings))
        # Bound methods, not wrappers: called for every input.
        self.decode_event = self.codecs["events"].decode
        self.encode_input = self.codecs["profile-inputs"].encode
        self.decode_input = self.codecs["profile-inputs"].decode
        self.encode_profile = self.profile.encode
        self.decode_profile = self.profile.decode

    def encode_output(self, topic: str, record: dict) -> bytes:
        data = self.codecs[topic].encode(record)
        if self.on_output is not None:
            self.on_output(topic, record)
        return data
