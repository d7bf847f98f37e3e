"""The Java example (examples/java) against a real worker, as a Java shop would use cjo: its
producer (kafka-clients, Avro's BinaryMessageEncoder over schemas/event.avsc) sends a visitor's
views, an identify and a member's purchase, every one of them accepted, each on the partition
that the worker's own client (aiokafka's murmur2) picks for its key; its consumer
(BinaryMessageDecoder with every released schema as a known writer) decodes every output the
worker made, exactly as the Python reader reads them. Fails, never skips, without java or mvn."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from cjo.kafka_io import read_all
from cjo.web_client import get_json
from tests.integration.harness import wait_processed
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "java"
JAR = EXAMPLE / "target" / "cjo-java-example.jar"
SCHEMAS = ROOT / "schemas"
OUTPUTS = {"segment-changes": ("segment_change", "change_id"),
           "activations": ("activation", "activation_id"),
           "journey-transitions": ("journey_transition", "transition_id"),
           "identity-merges": ("identity_merge", "merge_id")}


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: the Java example needs a JDK 17+ and Maven 3.8+"
    return path


@pytest.fixture(scope="module")
def example_jar() -> Path:
    """`mvn -q -B package` of the example (Maven Central on a clean machine, ~/.m2 after)."""
    _tool("java")
    built = subprocess.run([_tool("mvn"), "-q", "-B", "package"], cwd=EXAMPLE,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"mvn package failed:\n{built.stdout}\n{built.stderr}"
    assert JAR.is_file()
    return JAR


def _java(jar: Path, *args: str) -> list[list[str]]:
    done = subprocess.run([_tool("java"), "-jar", str(jar), *args], cwd=EXAMPLE,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"java {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def test_the_java_example_produces_and_consumes_against_a_worker(settings, workers,
                                                                 example_jar):
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, (ROOT / "examples" / "definitions.yaml").read_text()))
    worker = workers(settings)
    suffix = uuid.uuid4().hex[:8]
    sent = _java(example_jar, "produce", settings.bootstrap_servers, settings.app_id,
                 str(SCHEMAS), suffix)
    assert [row[4] for row in sent] == ["view", "view", "add_to_cart", "view", "identify",
                                        "purchase"]
    wait_processed(settings, worker)

    # Every Java event was accepted: no dead letter, and the member holds the whole history.
    dead = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("dead-letters"),
                                "dead_letter"))
    assert dead == [], [d.value["reason"] for d in dead]
    member = get_json(settings, f"/profiles/u-java-{suffix}")
    assert member["counts"] == {"view": 3, "add_to_cart": 1, "identify": 1, "purchase": 1}

    # Java's default partitioner put each key where aiokafka's murmur2 puts it.
    events = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("events"), "event"))
    by_position = {(r.partition, r.offset): r for r in events}
    partitions = list(range(settings.partitions))
    for _, _, partition, offset, name, event_id in sent:
        record = by_position[(int(partition), int(offset))]
        assert (record.value["name"], record.value["event_id"]) == (name, event_id)
        assert DefaultPartitioner()(record.key, partitions, partitions) == int(partition)

    # The Java consumer decoded every output, as the Python reader reads it (first copies).
    java = {(topic, int(p), int(o)): (key.encode(), json.loads(value))
            for topic, p, o, key, value in _java(example_jar, "consume",
                                                 settings.bootstrap_servers, settings.app_id,
                                                 str(SCHEMAS))}
    python = {}
    for name, (schema, id_field) in OUTPUTS.items():
        reads = asyncio.run(read_all(settings.bootstrap_servers, settings.topic(name), schema))
        assert reads, f"the worker made no {name}"
        seen = set()
        for r in reads:
            if r.value[id_field] not in seen:
                seen.add(r.value[id_field])
                python[(settings.topic(name), r.partition, r.offset)] = (r.key, r.value)
    assert java == python
