"""The app factory: one Faust app per settings, with its topics, tables, agents and views.

Data flows one way: events → identity (topology.pipeline.identity) → profile-inputs → profile
agent (topology.pipeline.profiles) → segment-changes, activations; bad input → dead-letters.
Definitions come from their compacted topic (topology.pipeline.definitions).
"""
from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from typing import Callable

import faust

from cjo.clock import Clock
from cjo.settings import Settings
from schemas.internal import codec_for
from topology.machinery.codecs import register
from topology.machinery.faust_fixes import App
from topology.machinery.native_memory import NativeMemory
from topology.machinery.rocksdb_memory import RocksDBMemory, install as budget_rocksdb_memory
from topology.machinery.sending import Outgoing, Sender
from topology.machinery.wire import WorkerWire
from topology.ops.metrics import Metrics
from topology.ops.stats import WorkerStats
from topology.ops.web_access import web_options
from topology.pipeline import topics
from topology.pipeline.dead_letters import DeadLetters
from topology.pipeline.definitions import DefinitionsFollower


# Per table partition (every table has one RocksDB database per partition): Faust's defaults
# allow 3 memtables of 64 MB each. Their memory, with the block cache and the index and filter
# blocks, is charged to the worker's one budget (topology.machinery.rocksdb_memory,
# `Settings.rocksdb_memory_mb`); the state lives on disk, and the operating system's page cache
# keeps what is read often.
ROCKSDB_OPTIONS = {"write_buffer_size": 4 * 1024 * 1024, "max_write_buffer_number": 2}


@dataclass
class Topology:
    app: faust.App
    settings: Settings
    topics: dict[str, faust.TopicT]
    wire: WorkerWire
    stats: WorkerStats
    dead_letters: DeadLetters
    definitions: DefinitionsFollower
    sender: Sender
    clock: Clock
    rocksdb_memory: RocksDBMemory
    native_memory: NativeMemory
    tables: dict[str, faust.types.TableT] = field(default_factory=dict)
    metrics: "Metrics | None" = None
    journey_counts: object = None  # set by topology.pipeline.profiles
    # topology.machinery.table_cache.TableCache, set by topology.pipeline.profiles
    profile_cache: object = None
    # Writes what the agents' write-back caches hold to RocksDB now; returns the changelog
    # records to submit (set by topology.pipeline.profiles; timers call it before they read a
    # table).
    write_tables: Callable[[], Outgoing] = Outgoing

    def table(self, name: str, schema: str) -> faust.types.TableT:
        """A RocksDB table keyed by profile or visitor id (UTF-8) whose values are records of
        `schema` (Avro, or msgpack for profiles: schemas.internal): its changelog is a topic
        too, with a schema like every other."""
        topic = f"{self.settings.app_id}-{name}-changelog"
        codec = register(topic, codec_for(schema, topic))
        # Faust derives a table's serializers from its key/value model types, and ours are
        # plain dicts; so the changelog topic is declared here, and the store gets the table's
        # serializers before it is made (lazily). Recovery and standbys write the records'
        # bytes as they are: "raw" spares decoding every restored profile for nothing.
        changelog = self.app.topic(
            topic,
            key_serializer="raw", value_serializer="raw",
            partitions=self.settings.partitions, compacting=True, acks=False, internal=True,
        )
        table = self.app.Table(name, partitions=self.settings.partitions,
                               changelog_topic=changelog,
                               options={**ROCKSDB_OPTIONS, "memory": self.rocksdb_memory})
        table.key_serializer = "raw"
        table.value_serializer = codec
        self.tables[name] = table
        return table


def logging_config(level: str) -> dict:
    """Logger levels for the worker (handed to mode's dictConfig, "merge" keeps its handlers).

    Faust's worker sets the root logger to DEBUG when it draws its terminal spinner, and
    aiokafka's loggers inherit that whatever the worker's level, which costs a worker about an
    eighth of its time. So the libraries' loggers get explicit levels: aiokafka at WARNING,
    Faust, mode and our own code at the worker's level.
    """
    level = level.upper()
    return {
        "version": 1,
        "merge": True,
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            **{name: {"level": level} for name in ("faust", "mode", "topology", "cjo")},
        },
    }


GC_THRESHOLDS = (20_000, 20, 50)


async def freeze_startup_objects() -> None:
    """App tasks start once the tables are recovered: what the worker made to get there (the
    modules, Faust's services, the definitions: ~90,000 objects) lives as long as it does. The
    garbage collector walked all of it in every full collection, every second or two at half
    the worker's rate: 50 ms each (median; up to 180 ms) in bench.pipeline on the shared
    2-core machine, the longest pauses of the event loop after the machine's own; 15-25 ms
    (up to 50) once frozen. Frozen objects are still freed when dropped, unless in a cycle.

    The youngest generation is collected every GC_THRESHOLDS[0] new containers instead of
    Python's 700: each input makes hundreds (decoded records, profiles, outputs), most freed by
    their reference counts within the input, and a collection every few inputs walked them
    anyway. Garbage collection per second of bulk input 42.7 -> 32.5 ms, at 1,000 events/s
    about 20 -> 2 ms (bench.pipeline, timed with gc.callbacks)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings, generation: str | None = None) -> Topology:
    """The worker's app; `generation` is the instance part of its output ids
    (topology.pipeline.topics.generation; None: the app id)."""
    budget_rocksdb_memory()
    native_memory = NativeMemory()
    # Before the worker starts its threads (RocksDB's, the executor's): they share the arenas.
    native_memory.limit_arenas(settings.malloc_arenas)
    datadir = settings.worker_dir
    datadir.mkdir(parents=True, exist_ok=True)
    app = App(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Batch outputs for up to 5 ms: one produce request per batch, not per record.
        producer_linger=0.005,
        # The batch agents send a record batch per partition per fetch: let it be large (a
        # fetch of profile inputs makes a changelog record of a few KB per profile).
        producer_max_batch_size=256 * 1024,
        broker_commit_interval=settings.commit_interval,
        # A worker killed without leaving the group holds its partitions this long.
        broker_session_timeout=settings.session_timeout,
        # Another worker keeps a warm copy of each table partition: a takeover after a crash
        # replays only the changelog's tail instead of the whole partition.
        table_standby_replicas=settings.standby_replicas,
        # Static group membership: a worker that restarts within the session timeout gets its
        # partitions back without a rebalance (faster, and no rebalance around a restart).
        consumer_group_instance_id=f"{settings.app_id}-{settings.web_host}-{settings.web_port}",
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        # Every view goes through the access check; Faust's own views that dump tables or
        # describe the app are off (its router view stays: `table_route` needs no view).
        web_application_options=web_options(settings),
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        logging_config=logging_config(settings.log_level),
        autodiscover=False,
    )
    app.fetch_max_wait_ms = settings.fetch_wait_ms
    declared = {
        # Every topic carries bytes: agents decode where a bad record can go to the dead
        # letters, and outputs are encoded once (the outbox keeps the same bytes).
        spec.name: app.topic(
            settings.topic(spec.name),
            key_serializer="raw",
            value_serializer="raw",
            partitions=spec.partitions or settings.partitions,
            config=topics.topic_config(spec),
        )
        for spec in topics.ALL
    }
    stats = WorkerStats()
    sender = app.sender = Sender(app, {name: settings.topic(name) for name in declared})
    # Our own records of a batch agent's topic go to it once acknowledged (no fetch waited for).
    sender.hand_off, sender.hand_off_topics = app.batches.hand_off, app.batches.agents
    wire = WorkerWire(settings, on_output=stats.count_output, generation=generation)
    topology = Topology(
        app=app, settings=settings, topics=declared, wire=wire, stats=stats,
        sender=sender,
        dead_letters=DeadLetters(wire.codecs["dead-letters"], stats),
        definitions=DefinitionsFollower(settings),
        clock=Clock(),
        rocksdb_memory=RocksDBMemory(settings.rocksdb_memory_mb * 1024 * 1024),
        native_memory=native_memory,
    )
    topology.metrics = Metrics(topology)

    from topology.ops import views
    from topology.pipeline import identity, profiles

    app.task(topology.definitions.run)
    app.task(freeze_startup_objects)
    if settings.malloc_trim_interval and native_memory.available:
        @app.timer(settings.malloc_trim_interval)
        async def trim_native_memory() -> None:
            # A trim walks every arena (~10 ms for a heap of 150 MB): off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, native_memory.trim)
    identity.register(topology)
    profiles.register(topology)
    views.register(topology)
    return topology
