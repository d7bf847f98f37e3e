"""The identity step's side of merges and partitions, on the real broker:

- each identify that makes a visitor an alias of a (new) member writes one `identity-merges`
  record, keyed by the member, with the visitor, the member, the one before, the identify's time
  and id; a worker killed before it committed makes the same records again (same ids, same
  content), and a consumer that drops seen ids sees each merge once;
- an event on another partition than murmur2 of its key picks is processed as usual, counted
  in /stats/ and /metrics, and logged once per key."""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from cjo.kafka_io import read_all
from cjo.web_client import call
from schemas.codec import AvroCodec
from tests.integration.harness import outputs, send_events, stats, table, wait_processed
from topology.pipeline.identity import murmur2_partition
from topology.pipeline.topics import ensure_topics, generation

NOW = int(time.time() * 1000) - 3_600_000


def event(eid: str, name: str, visitor: str | None, user: str | None, n: int) -> dict:
    return {"event_id": eid, "name": name, "visitor_id": visitor, "user_id": user,
            "time": NOW + n, "request_id": None, "values": {}}


def keyed(e: dict) -> tuple[bytes, dict]:
    return (e["visitor_id"] or e["user_id"]).encode(), e


def _read_merges(settings) -> list:
    return asyncio.run(read_all(settings.bootstrap_servers, settings.topic("identity-merges"),
                                "identity_merge"))


def test_an_identify_makes_one_merge_record_even_when_redelivered(settings, workers):
    ensure_topics(settings)
    log = [event("a-view", "view", "v-a", None, 1),
           event("a-id1", "identify", "v-a", "u-a", 2),
           event("a-id1-again", "identify", "v-a", "u-a", 3),  # the same member: no merge
           event("a-view2", "view", "v-a", None, 4),
           event("a-id2", "identify", "v-a", "u-b", 5),  # identified anew: a second merge
           event("c-id", "identify", "v-c", "u-c", 6)]  # a visitor with no history merges too
    # A worker that never commits (the interval is longer than the test): killed, its inputs
    # all come again.
    first = workers(settings.with_(commit_interval=3600.0))
    positions = send_events(settings, [keyed(e) for e in log])
    at = {e["event_id"]: (e, p) for e, p in zip(log, positions)}
    instance = generation(settings)

    def merge(eid: str, visitor: str, member: str, previous: str | None) -> dict:
        e, (partition, offset) = at[eid]
        return {"merge_id": f"{instance}/{visitor}>{member}@{partition}:{offset}",
                "visitor_id": visitor,
                "member_id": member, "previous_member_id": previous, "time": e["time"],
                "caused_by": eid, "source_partition": partition, "source_offset": offset}

    expected = [merge("a-id1", "v-a", "u-a", None), merge("a-id2", "v-a", "u-b", "u-a"),
                merge("c-id", "v-c", "u-c", None)]
    deadline = time.monotonic() + 120
    while len(_read_merges(settings)) < len(expected):
        assert time.monotonic() < deadline and first.running(), first.log_tail()
        time.sleep(0.3)
    # The merges went out before their identifies' offsets were committed (none was).
    first_copies = _read_merges(settings)
    assert sorted((r.value for r in first_copies), key=lambda v: v["caused_by"]) == sorted(
        expected, key=lambda v: v["caused_by"])
    assert all(r.key == r.value["member_id"].encode() for r in first_copies)
    seen = stats(settings, first)
    assert seen["outputs"]["identity-merges/merge"] == 3
    first.kill()  # kill -9: nothing committed, every identify is read again

    second = workers(settings)
    wait_processed(settings, second)
    by_id, by_member, duplicates = outputs(settings, "identity-merges", "identity_merge",
                                           "merge_id")  # asserts copies are identical
    assert by_id == {m["merge_id"]: m for m in expected}
    assert by_member == {"u-a": [expected[0]["merge_id"]], "u-b": [expected[1]["merge_id"]],
                         "u-c": [expected[2]["merge_id"]]}
    assert duplicates == 3, "the replayed identifies did not send their merges again"
    # Copies sent again are not new outputs.
    assert stats(settings, second)["outputs"].get("identity-merges/merge", 0) == 0

    # The merge id is the one the merge's segment changes and profiles carry.
    profiles = table(settings, "profiles", "profile")
    assert profiles["v-c"]["merged_into"] == "u-c"
    assert expected[1]["merge_id"] in profiles["u-b"]["merges_done"]


async def _send_on(settings, records) -> None:
    """Send (key, event, partition) records, each to the partition given."""
    codec = AvroCodec("event", settings.topic("events"))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, e, partition in records:
            await producer.send_and_wait(settings.topic("events"), codec.encode(e), key=key,
                                         partition=partition)
    finally:
        await producer.stop()


def test_a_record_on_the_wrong_partition_is_processed_counted_and_logged_once(settings,
                                                                            workers):
    ensure_topics(settings)
    n = settings.partitions

    def wrong(key: str) -> int:
        return (murmur2_partition(key.encode(), n) + 1) % n

    worker = workers(settings)
    # A visitor identified through its own partition, then one of its views through another.
    send_events(settings, [keyed(event("s-view", "view", "v-split", None, 1)),
                           keyed(event("s-id", "identify", "v-split", "u-split", 2))])
    wait_processed(settings, worker)
    asyncio.run(_send_on(settings, [
        (b"v-split", event("s-late", "view", "v-split", None, 3), wrong("v-split")),
        (b"v-wrong", event("w1", "view", "v-wrong", None, 4), wrong("v-wrong")),
        (b"v-wrong", event("w2", "view", "v-wrong", None, 5), wrong("v-wrong")),
        (b"u-wrong", event("w3", "buy", None, "u-wrong", 6), wrong("u-wrong")),
        # Named explicitly, but the partition murmur2 picks: not counted.
        (b"v-right", event("r1", "view", "v-right", None, 7),
         murmur2_partition(b"v-right", n)),
    ]))
    wait_processed(settings, worker)

    seen = stats(settings, worker)
    assert seen["wrong_partition"] == 4
    assert seen["events_in"] == 7 and seen["dead_letters_total"] == 0
    status, _, body = call(settings, "/metrics", token="")
    assert status == 200
    assert "cjo_wrong_partition_events_total 4.0" in body.decode()

    # Processed as usual: every event is in its profile; the visitor's view that missed the
    # alias (another partition than the identify's) reached the member through the visitor.
    profiles = table(settings, "profiles", "profile")
    assert profiles["v-wrong"]["counts"] == {"view": 2}
    assert profiles["u-wrong"]["counts"] == {"buy": 1}
    assert profiles["v-right"]["counts"] == {"view": 1}
    assert profiles["v-split"]["merged_into"] == "u-split"
    assert profiles["u-split"]["counts"] == {"view": 2, "identify": 1}

    # One log line per key.
    lines = [line for line in worker.log_path.read_text().splitlines()
             if "Kafka's default partitioner" in line]
    assert [k for k in ("'v-split'", "'v-wrong'", "'u-wrong'", "'v-right'")
            if any(f"key b{k}" in line for line in lines)] == ["'v-split'", "'v-wrong'",
                                                                 "'u-wrong'"]
    assert len(lines) == 3, lines
    assert all("murmur2_random" in line for line in lines)
    dead = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("dead-letters"),
                                "dead_letter"))
    assert dead == []
