"""Every topic of the topology in one table: its name, key, Avro schema and cleanup policy.

Faust declares them from this table, and `ensure_topics` creates them up front with the
configured partition count (the broker's auto-creation is off, so a producer that runs before
the first worker cannot create a topic with the wrong number of partitions).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from cjo.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str  # suffix after "<app_id>."
    schema: str  # file stem in schemas/
    key: str  # what the key holds, for the docs
    compacted: bool = False
    partitions: int | None = None  # None: the app's partition count
    table: str | None = None  # the changelog of this Faust table

    def topic_name(self, settings: Settings) -> str:
        # Faust names changelogs "<app>-<table>-changelog"; ours are "<app>.<name>".
        if self.table:
            return f"{settings.app_id}-{self.table}-changelog"
        return settings.topic(self.name)


EVENTS = TopicSpec("events", "event", "producer's id: visitor id, else user id")
PROFILE_INPUTS = TopicSpec("profile-inputs", "profile_input", "canonical profile id")
SEGMENT_CHANGES = TopicSpec("segment-changes", "segment_change", "profile id")
ACTIVATIONS = TopicSpec("activations", "activation", "profile id")
JOURNEY_TRANSITIONS = TopicSpec("journey-transitions", "journey_transition", "profile id")
# Written by the identity step, one record per identify that records a new alias.
IDENTITY_MERGES = TopicSpec("identity-merges", "identity_merge", "member id")
DEAD_LETTERS = TopicSpec("dead-letters", "dead_letter", "the bad record's own key")
# One partition: workers see definitions in the order they were applied.
DEFINITIONS = TopicSpec("definitions", "definition", "kind:id", compacted=True, partitions=1)

SNAPSHOTS = TopicSpec("snapshots", "snapshot_manifest", "profile-inputs partition",
                      compacted=True)

ALL = (EVENTS, PROFILE_INPUTS, SEGMENT_CHANGES, ACTIVATIONS, JOURNEY_TRANSITIONS, IDENTITY_MERGES,
       DEAD_LETTERS, DEFINITIONS, SNAPSHOTS)
# Created up front too: a worker that writes a table before its own client has seen the new
# changelog topic stops with PartitionsMismatch ("the changelog topic has 0 partitions").
CHANGELOGS = (
    TopicSpec("profiles-changelog", "profile", "profile id", compacted=True, table="profiles"),
    TopicSpec("aliases-changelog", "alias", "visitor id", compacted=True, table="aliases"),
    TopicSpec("wakeups-changelog", "wakeup", "due:profile:journey:seq", compacted=True,
              table="wakeups"),
)


def topic_config(spec: TopicSpec) -> dict[str, str]:
    return {"cleanup.policy": "compact"} if spec.compacted else {}


async def _ensure(settings: Settings, specs) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                s.topic_name(settings),
                num_partitions=s.partitions or settings.partitions,
                replication_factor=1,
                topic_configs=topic_config(s),
            )
            for s in specs
            if s.topic_name(settings) not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
    finally:
        await admin.close()
    await _wait_for_leaders(settings, [s.topic_name(settings) for s in specs])
    return [t.name for t in wanted]


async def _wait_for_leaders(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    """Creation returns before every partition has a leader; producing then fails and retries."""
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap_servers)
    await client.bootstrap()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await client.force_metadata_update()
            cluster = client.cluster
            missing = [
                n for n in names
                if not cluster.partitions_for_topic(n)
                or any(cluster.leader_for_partition(_tp(n, p)) in (None, -1)
                       for p in cluster.partitions_for_topic(n))
            ]
            if not missing:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"topics without partition leaders after {timeout}s: {missing}")
            await asyncio.sleep(0.1)
    finally:
        await client.close()


def _tp(topic: str, partition: int):
    from aiokafka import TopicPartition

    return TopicPartition(topic, partition)


def ensure_topics(settings: Settings, specs=ALL + CHANGELOGS) -> list[str]:
    """Create the missing topics; returns the names created."""
    return asyncio.run(_ensure(settings, specs))


def generation(settings: Settings) -> str:
    """The instance part of the app's output ids (state.output_ids), the same for every worker
    and every replay: the first characters of the `<app>.events` topic's Kafka topic id, new
    whenever the topic is created again and different for every app; the app id on a broker
    without topic ids (older than Kafka 2.8)."""
    from state.output_ids import GENERATION_CHARS
    from topology.machinery.topic_ids import topic_id

    found = asyncio.run(topic_id(settings.bootstrap_servers, settings.topic("events")))
    if found is None:
        log.warning("the broker has no topic ids: output ids carry the app id %r, and repeat "
                    "if the app's topics are created again", settings.app_id)
        return settings.app_id
    return found[:GENERATION_CHARS]


async def _delete(settings: Settings, prefixes: tuple[str, ...]) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def delete_topics(settings: Settings, prefixes: tuple[str, ...] | None = None) -> list[str]:
    """Delete this app's topics and its Faust changelogs, or every topic whose name starts
    with one of `prefixes` (the demo removes earlier demo runs)."""
    default = (settings.app_id + ".", settings.app_id + "-")
    return asyncio.run(_delete(settings, prefixes or default))
