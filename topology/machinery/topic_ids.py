"""A topic's Kafka topic id: the generation part of output ids (state.output_ids).

Kafka gives every topic a random 128-bit id when it is created (KIP-516, Kafka 2.8 on; topics
made before get one on upgrade). It is the same for every client, kept by the broker for the
topic's life, and new when the topic is deleted and created again: exactly a "topic
generation", with nothing to write and no race between workers that create topics at once.
aiokafka's metadata requests stop at version 5, before topic ids (version 10), so this module
sends Metadata version 12 itself, for the one topic.
"""
from __future__ import annotations

import asyncio
import base64
from io import BytesIO

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (AbstractType, Boolean, CompactArray, CompactString, Int16,
                                     Int32, Schema, TaggedFields)

ZERO = bytes(16)  # Kafka's "no id" (Uuid.ZERO_UUID): a broker without topic ids


class Uuid(AbstractType[bytes]):
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return value


class MetadataResponse_v12(Response):
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(
            ("node_id", Int32), ("host", CompactString("utf-8")), ("port", Int32),
            ("rack", CompactString("utf-8")), ("tags", TaggedFields))),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16), ("name", CompactString("utf-8")), ("topic_id", Uuid),
            ("is_internal", Boolean),
            ("partitions", CompactArray(
                ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                ("leader_epoch", Int32), ("replica_nodes", CompactArray(Int32)),
                ("isr_nodes", CompactArray(Int32)), ("offline_replicas", CompactArray(Int32)),
                ("tags", TaggedFields))),
            ("topic_authorized_operations", Int32), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):
    API_KEY = 3
    API_VERSION = 12
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        ("topics", CompactArray(
            ("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdRequest(Request[MetadataRequest_v12]):
    API_KEY = 3

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def build(self, request_struct_class):
        return request_struct_class([(ZERO, self.topic, {})], False, False, {})


def as_text(topic_id: bytes) -> str:
    """The id as Kafka prints it (kafka-topics --describe: TopicId): URL-safe base64, no
    padding."""
    return base64.urlsafe_b64encode(topic_id).decode().rstrip("=")


async def topic_id(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> str | None:
    """The topic's id as Kafka prints it; None only when the broker has no topic ids (it
    refuses Metadata version 12, or gives the topic the zero id). Any other failure (no
    connection, no leader, a topic not known yet) is tried again until `timeout`, then raised:
    a worker must never fall back by accident, or its next start would make other ids."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import IncompatibleBrokerVersion, KafkaError

    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers)
    await client.bootstrap()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                response = await client.send(client.get_random_node(), TopicIdRequest(topic))
            except (NotImplementedError, IncompatibleBrokerVersion):
                return None
            except KafkaError as exc:
                problem = repr(exc)
            else:
                found = [(error_code, tid) for error_code, name, tid, *_ in response.topics
                         if name == topic]
                if found and found[0][0] == 0:
                    return None if found[0][1] == ZERO else as_text(found[0][1])
                problem = f"error code {found[0][0]}" if found else "not in the answer"
            if loop.time() > deadline:
                raise RuntimeError(f"no topic id for {topic} after {timeout}s: {problem}")
            await asyncio.sleep(0.5)
    finally:
        await client.close()
