"""The first path through the topology (the profile agent replaces it): count each user's
events in a RocksDB-backed table and emit one record per event."""
from __future__ import annotations

import logging

from schemas.codec import AvroCodec, CodecError

log = logging.getLogger(__name__)


def register(topology) -> None:
    app = topology.app
    events = topology.topics["events"]
    outputs = topology.topics["event-counts"]
    decoder = AvroCodec("event", events.get_topic_name())
    counts = app.Table(
        "event-counts",
        default=int,
        key_type=str,
        value_type=int,
        partitions=topology.settings.partitions,
    )

    @app.agent(events, name="count-events")
    async def count_events(stream):
        async for event in stream.events():
            message = event.message
            try:
                record = decoder.decode(event.value)
            except CodecError as exc:
                # Dead letters arrive with the profile agent; until then a bad record is logged.
                log.error("skipping %s[%d]@%d: %s", message.topic, message.partition,
                          message.offset, exc)
                continue
            user = record["user_id"] or record["visitor_id"]
            if not user:
                log.error("skipping %s[%d]@%d: no user id", message.topic, message.partition,
                          message.offset)
                continue
            count = counts[user] + 1
            counts[user] = count
            await outputs.send(
                key=user.encode(),
                value={
                    "output_id": f"{message.topic}:{message.partition}:{message.offset}",
                    "user_id": user,
                    "event_id": record["event_id"],
                    "event_name": record["name"],
                    "count": count,
                    "source_partition": message.partition,
                    "source_offset": message.offset,
                },
            )

    topology.tables["event-counts"] = counts
