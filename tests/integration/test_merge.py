"""Merges happen before what follows them. Right after `identify`, the visitor keeps sending
(same producer) while the member sends as fast as it can from another producer. Every event the
stream orders after the identify, on either side, sees the visitor's whole history, and no
event ever sees a half-merged profile.

How an event's view is observed: segments `n001` … `n140` mean "at least k events in total";
the record "entered n0k" says which input made the profile's count reach k, so each event's
count (what it saw, plus one) can be read from the segment-changes topic."""
from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from schemas.codec import AvroCodec
from tests.integration.harness import outputs, send_events, table, wait_processed
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics

K = 140
MEMBER, VISITOR = "member-1", "visitor-1"
T0 = int(time.time() * 1000) - 3_600_000


def ping(eid: str, visitor, user, n: int, name: str = "ping") -> tuple[bytes, dict]:
    return (visitor or user).encode(), {
        "event_id": eid, "name": name, "visitor_id": visitor, "user_id": user,
        "time": T0 + n, "request_id": None, "values": {}}


async def _send(settings, log) -> None:
    codec = AvroCodec("event", settings.topic("events"))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, event in log:  # one at a time, as fast as the broker acknowledges
            await producer.send_and_wait(settings.topic("events"), codec.encode(event), key=key)
    finally:
        await producer.stop()


async def _race(settings, visitor_log, member_log) -> None:
    await asyncio.gather(_send(settings, visitor_log), _send(settings, member_log))


def test_events_after_identify_see_the_merged_history(settings, workers):
    settings = settings.with_(commit_interval=0.5)
    ensure_topics(settings)
    segments = [{"id": f"n{k:03d}", "condition": {"count.*": {"gte": k}}}
                for k in range(1, K + 1)]
    asyncio.run(apply_definitions(settings, {"segments": segments}))
    worker = workers(settings)

    before = [ping(f"m{i}", None, MEMBER, i) for i in range(30)]
    before += [ping(f"v{i}", VISITOR, None, 100 + i) for i in range(40)]
    send_events(settings, before)
    wait_processed(settings, worker)

    visitor_log = [ping("identify", VISITOR, MEMBER, 1000, "identify")]
    visitor_log += [ping(f"v-after{i}", VISITOR, MEMBER, 1001 + i) for i in range(30)]
    member_log = [ping(f"m-race{i}", None, MEMBER, 1001 + i) for i in range(30)]
    asyncio.run(_race(settings, visitor_log, member_log))
    wait_processed(settings, worker)

    changes, sequence, _ = outputs(settings, "segment-changes", "segment_change", "change_id")
    entered = {}  # k -> the input that made the member's count reach k
    for cid in sequence[MEMBER]:
        change = changes[cid]
        assert change["change"] == "entered", change
        entered[int(change["segment"][1:])] = change["caused_by"]
    total = 30 + 40 + 1 + 30 + 30
    assert sorted(entered) == list(range(1, total + 1)), "a count was skipped or repeated"

    merge_ks = sorted(k for k, cause in entered.items() if ">" in cause)
    a = merge_ks[0] - 1  # member events the stream applied before the merge
    assert merge_ks == list(range(a + 1, a + 41)), "the visitor's 40 events arrived at once"
    assert entered[a + 41] == "identify", "identify is applied on the merged profile"
    for k, cause in entered.items():
        if cause.startswith("v-after"):
            assert k > a + 41, f"{cause} did not see the merged history"
        if cause.startswith("m-race"):
            assert k <= a or k > a + 41, f"{cause} saw a half-merged profile"
        if cause.startswith("m") and not cause.startswith("m-race"):
            assert k <= 30
    assert a >= 30

    # The visitor is now a pointer to the member and left all of its segments at the merge.
    left = [changes[c] for c in sequence[VISITOR] if changes[c]["change"] == "left"]
    assert sorted(c["segment"] for c in left) == [f"n{k:03d}" for k in range(1, 41)]
    assert all(">" in c["caused_by"] for c in left)
    profiles = table(settings, "profiles", "profile")
    assert profiles[VISITOR]["merged_into"] == MEMBER
    assert profiles[MEMBER]["counts"] == {"ping": 130, "identify": 1}
    assert profiles[MEMBER]["pending_merges"] == [] and profiles[MEMBER]["buffered"] == []
