"""Fencing (topology.machinery.membership) and commits that happen (faust_fixes): a worker
whose membership may have expired writes nothing more, and a commit the broker refused is
tried again."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from aiokafka.protocol.group import HeartbeatRequest, SyncGroupRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.produce import ProduceRequest

from topology.machinery.faust_fixes import commits_that_happen
from topology.machinery.membership import REBALANCE_IN_PROGRESS, MembershipLease


class Expired(Exception):
    pass


def _expired(reason: str) -> None:
    raise Expired(reason)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lease(clock: Clock, session: float = 10.0) -> MembershipLease:
    return MembershipLease(session, on_expired=_expired, clock=clock)


def test_a_worker_that_never_joined_has_nothing_to_fence():
    lease = _lease(Clock())
    lease.check("a write")
    assert lease.remaining() is None and lease.fenced == 0


def test_a_write_within_the_session_timeout_of_the_last_answered_heartbeat_goes_on():
    clock = Clock()
    lease = _lease(clock)
    lease.renew(clock.now)
    clock.now += 9.9
    lease.check("a write")
    assert lease.remaining() == pytest.approx(0.1)


def test_a_write_after_a_stall_past_the_session_timeout_stops_the_worker():
    clock = Clock()
    lease = _lease(clock)
    lease.renew(clock.now)
    clock.now += 17.0  # SIGSTOP, a long GC or VM pause
    with pytest.raises(Expired, match="no heartbeat was answered for 17.0s"):
        lease.check("a produce request")
    assert lease.fenced == 1


def test_an_older_renewal_never_shortens_the_lease():
    clock = Clock()
    lease = _lease(clock)
    lease.renew(clock.now)
    lease.renew(clock.now - 5)
    assert lease.renewed_at == clock.now


def _coordinator(responses):
    sent = []

    async def send_req(request):
        sent.append(request)
        return responses.pop(0)

    return SimpleNamespace(_send_req=send_req), sent


def test_answered_heartbeats_and_syncs_renew_the_lease_from_when_they_were_sent():
    clock = Clock()
    lease = _lease(clock)
    answers = [SimpleNamespace(error_code=0), SimpleNamespace(error_code=REBALANCE_IN_PROGRESS),
               SimpleNamespace(error_code=0)]
    coordinator, sent = _coordinator(answers)
    lease.watch_coordinator(coordinator)

    asyncio.run(coordinator._send_req(HeartbeatRequest("g", 1, "m")))
    assert lease.renewed_at == 1000.0
    clock.now = 1003.0
    asyncio.run(coordinator._send_req(HeartbeatRequest("g", 1, "m")))  # still a member
    assert lease.renewed_at == 1003.0
    clock.now = 1006.0
    asyncio.run(coordinator._send_req(SyncGroupRequest("g", 2, "m", "i", [])))
    assert lease.renewed_at == 1006.0 and len(sent) == 3


@pytest.mark.parametrize("code", [25, 22, 82])  # unknown member, illegal generation, fenced
def test_a_refused_heartbeat_loses_the_membership_for_good(code):
    clock = Clock()
    lease = _lease(clock)
    lease.renew(clock.now)
    coordinator, _ = _coordinator([SimpleNamespace(error_code=code),
                                   SimpleNamespace(error_code=0)])
    lease.watch_coordinator(coordinator)
    asyncio.run(coordinator._send_req(HeartbeatRequest("g", 1, "m")))
    clock.now += 1.0
    asyncio.run(coordinator._send_req(SyncGroupRequest("g", 2, "m", "i", [])))  # it rejoined
    with pytest.raises(Expired, match=f"error {code}"):
        lease.check("a produce request")


def test_a_rejoin_after_a_stall_does_not_make_the_old_work_writable():
    """The woken worker's consumer thread may rejoin (a new generation, other partitions)
    before its agents write what they computed for the partitions it had: the first request
    after the stall finds the lease run out, and no answer renews it after that."""
    clock = Clock()
    lease = _lease(clock)
    coordinator, _ = _coordinator([SimpleNamespace(error_code=0), SimpleNamespace(error_code=0)])
    lease.watch_coordinator(coordinator)
    lease.renew(clock.now)
    clock.now += 17.0  # SIGSTOP
    asyncio.run(coordinator._send_req(HeartbeatRequest("g", 1, "m")))  # answered: rebalanced
    asyncio.run(coordinator._send_req(SyncGroupRequest("g", 2, "m", "i", [])))
    assert lease.renewed_at == 1000.0 and lease.lost.startswith("no heartbeat")
    with pytest.raises(Expired):
        lease.check("a changelog record of the batch it was in")


def test_the_renewal_counts_from_the_send_not_the_answer():
    clock = Clock()
    lease = _lease(clock)

    async def slow_answer(request):
        clock.now += 4.0  # the answer takes 4 s: the broker may have received it at once
        return SimpleNamespace(error_code=0)

    coordinator = SimpleNamespace(_send_req=slow_answer)
    lease.watch_coordinator(coordinator)
    asyncio.run(coordinator._send_req(HeartbeatRequest("g", 1, "m")))
    assert lease.renewed_at == 1000.0


def _client():
    sent = []

    async def send(node_id, request, **kwargs):
        sent.append(request)
        return "answer"

    return SimpleNamespace(send=send), sent


def test_no_produce_request_leaves_a_worker_whose_lease_ran_out():
    clock = Clock()
    lease = _lease(clock)
    client, sent = _client()
    lease.guard_producer(client)
    lease.renew(clock.now)
    produce = ProduceRequest(transactional_id=None, required_acks=-1, timeout=1000, topics=[])

    assert asyncio.run(client.send(1, produce)) == "answer"
    clock.now += 11.0
    with pytest.raises(Expired):
        client.send(1, produce)
    assert sent == [produce]
    # Other requests (metadata, to find the new coordinator) still go.
    metadata = MetadataRequest([])
    asyncio.run(client.send(1, metadata))
    assert sent == [produce, metadata]


def _consumer(results):
    committed = defaultdict(lambda: None)
    committed["t0"] = 10

    async def commit_offsets(offsets, start_new_transaction=True):
        committed.update(offsets)  # as Faust does, whether or not the broker took them
        return results.pop(0)

    return SimpleNamespace(_commit_offsets=commit_offsets, _committed_offset=committed)


def test_a_refused_commit_is_not_taken_as_committed_and_is_tried_again():
    consumer = _consumer([False, True])
    commit = commits_that_happen(consumer)
    assert asyncio.run(commit({"t0": 25, "t1": 7})) is False
    assert consumer._committed_offset["t0"] == 10 and "t1" not in consumer._committed_offset
    assert asyncio.run(commit({"t0": 25, "t1": 7})) is True
    assert dict(consumer._committed_offset) == {"t0": 25, "t1": 7}
