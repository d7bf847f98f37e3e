"""The app factory: one Faust app per settings, with its topics, tables and agents."""
from __future__ import annotations

from dataclasses import dataclass, field

import faust

from cjo.settings import Settings
from topology import topics
from topology.codecs import register_avro


@dataclass
class Topology:
    app: faust.App
    settings: Settings
    topics: dict[str, faust.TopicT]
    tables: dict[str, faust.types.TableT] = field(default_factory=dict)


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


def create_app(settings: Settings) -> Topology:
    datadir = settings.worker_dir
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        logging_config=logging_config(settings.log_level),
        autodiscover=False,
    )
    declared = {}
    for spec in topics.ALL:
        name = settings.topic(spec.name)
        declared[spec.name] = app.topic(
            name,
            key_serializer="raw",
            # The input is decoded inside the agent, where a bad record can be handled;
            # outputs are encoded by the registered Avro codec.
            value_serializer="raw" if spec is topics.EVENTS else register_avro(name, spec.schema),
            partitions=settings.partitions,
            config=topics.topic_config(spec),
        )
    topology = Topology(app, settings, declared)

    from topology import counting

    counting.register(topology)
    return topology
