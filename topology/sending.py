"""How the agents send records: straight to the Kafka producer Faust holds, past Faust's
per-record channel machinery (its `Topic.send` builds several objects and callbacks per record,
a noticeable share of a worker's time), and never silently lost.

Faust flushes this same producer before it commits (topology.faust_fixes.App), so a record
sent while an input is processed is in Kafka before that input's offset is committed. A record
the broker refuses in the end (retries exhausted) stops the worker before anything more is
committed: its input is processed again after the restart."""
from __future__ import annotations

from topology.faust_fixes import stop_worker


class Sender:
    def __init__(self, app, topic_names: dict[str, str]) -> None:
        self.app = app
        self.topic_names = topic_names  # our topic name -> the Kafka topic's

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        sent = await self.app.producer.send(self.topic_names[topic], key, value, None, None,
                                            None)
        sent.add_done_callback(self._delivered)

    @staticmethod
    def _delivered(sent) -> None:
        if sent.cancelled() or sent.exception() is None:
            return
        stop_worker(f"a record was not delivered: {sent.exception()!r}", sent.exception())
