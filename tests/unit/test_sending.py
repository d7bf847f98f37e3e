"""Agents send records straight to the producer Faust flushes before it commits; a record the
broker refuses in the end stops the worker before anything more is committed."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from topology import sending
from topology.sending import Sender


class FakeProducer:
    def __init__(self) -> None:
        self.sent = []
        self.futures = []

    async def send(self, topic, key, value, partition, timestamp, headers):
        self.sent.append((topic, key, value, partition))
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def run(outcome, monkeypatch):
    stopped = []
    monkeypatch.setattr(sending, "stop_worker", lambda reason, exc=None: stopped.append(reason))
    producer = FakeProducer()
    sender = Sender(SimpleNamespace(producer=producer), {"segment-changes": "app.segment-changes"})

    async def scenario():
        await sender.send("segment-changes", b"u1", b"record")
        outcome(producer.futures[0])
        await asyncio.sleep(0)  # done-callbacks run on the next loop turn

    asyncio.run(scenario())
    return producer, stopped


def test_a_record_goes_to_the_kafka_topic_keyed_as_given_partitioned_by_the_producer(
        monkeypatch):
    producer, stopped = run(lambda f: f.set_result("metadata"), monkeypatch)
    assert producer.sent == [("app.segment-changes", b"u1", b"record", None)]
    assert stopped == []


def test_a_record_the_broker_refuses_stops_the_worker(monkeypatch):
    _, stopped = run(lambda f: f.set_exception(TimeoutError("delivery timed out")), monkeypatch)
    assert stopped == ["a record was not delivered: TimeoutError('delivery timed out')"]
