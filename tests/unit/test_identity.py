"""The identity step's pure helpers: the partition murmur2 picks for a key, the counted warning
for records on another partition (one log line per key, bounded), and the identity-merges
record (its schema, and the same record from the reference model)."""
from __future__ import annotations

import logging
from collections import Counter
from types import SimpleNamespace

from schemas.codec import AvroCodec
from state.definitions import load_definitions
from tests.model import ReferenceModel
from topology.pipeline.identity import WrongPartitions, merge_record, murmur2_partition

# Computed by kafka-clients 4.3.1 (docs/producers.md, "Partitioner"; tests/unit/test_producer.py).
JAVA_PARTITIONS_OF_8 = {b"v1": 3, b"u1": 0, b"u00042": 0, b"a00007": 5}


def record(key: bytes, partition: int, offset: int = 0):
    return SimpleNamespace(key=key, partition=partition, offset=offset, topic="t.events")


def test_murmur2_partition_is_the_java_clients():
    assert {k: murmur2_partition(k, 8) for k in JAVA_PARTITIONS_OF_8} == JAVA_PARTITIONS_OF_8


def test_a_record_on_its_keys_partition_is_not_counted():
    counters = Counter()
    check = WrongPartitions(counters)
    assert not any(check.check(record(k, p), 8) for k, p in JAVA_PARTITIONS_OF_8.items())
    assert counters["wrong_partition"] == 0


def test_an_unknown_partition_count_checks_nothing():
    counters = Counter()
    assert not WrongPartitions(counters).check(record(b"v1", 0), None)
    assert counters == Counter()


def test_a_record_on_another_partition_is_counted_and_its_key_logged_once(caplog):
    counters = Counter()
    check = WrongPartitions(counters)
    with caplog.at_level(logging.WARNING, logger="topology.pipeline.identity"):
        assert check.check(record(b"v1", 5, offset=7), 8)
        assert check.check(record(b"v1", 5, offset=8), 8)
        assert check.check(record(b"v1", 6, offset=0), 8)  # the same key, another partition
    assert counters["wrong_partition"] == 3
    [line] = caplog.messages
    assert "b'v1' is on t.events[5] (offset 7)" in line
    assert "puts it on partition 3 of 8" in line and "murmur2_random" in line


def test_the_keys_logged_are_bounded(caplog):
    counters = Counter()
    check = WrongPartitions(counters, max_logged=2)
    keys = [f"k{i}".encode() for i in range(10)]
    with caplog.at_level(logging.WARNING, logger="topology.pipeline.identity"):
        for _ in range(3):
            for key in keys:
                check.check(record(key, (murmur2_partition(key, 8) + 1) % 8), 8)
    assert counters["wrong_partition"] == 30
    assert len(check.logged) == 2
    assert len(caplog.messages) == 3  # two keys, then one line that says the rest is counted
    assert "further ones are counted" in caplog.messages[-1]


def test_the_merge_record_fits_its_schema_and_is_the_models():
    identify = {"event_id": "e-9", "name": "identify", "visitor_id": "v1", "user_id": "u1",
                "time": 1_767_225_600_000, "request_id": None, "values": {}}
    made = merge_record(identify, None, "cjo/v1>u1@3:41", 3, 41)
    codec = AvroCodec("identity_merge", "t.identity-merges")
    assert codec.decode(codec.encode(made)) == made
    assert made == {"merge_id": "cjo/v1>u1@3:41", "visitor_id": "v1", "member_id": "u1",
                    "previous_member_id": None, "time": 1_767_225_600_000,
                    "caused_by": "e-9", "source_partition": 3, "source_offset": 41}

    model = ReferenceModel(load_definitions("{}"))
    model.apply(3, 41, identify)
    model.apply(3, 42, {**identify, "event_id": "e-10"})  # the same member again: no merge
    again = {**identify, "event_id": "e-11", "user_id": "u2"}
    model.apply(3, 43, again)
    assert model.outputs["identity-merges"] == [
        made, merge_record(again, "u1", "cjo/v1>u2@3:43", 3, 43)]
