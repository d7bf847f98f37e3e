"""Fencing: a worker that may have lost its partitions writes nothing more to Kafka.

The group coordinator expires a member `session timeout` seconds after the last heartbeat it
received, and gives its partitions to another worker, which restores their tables from the
changelogs and reads their inputs from the last commit. A worker that stood still past that
time (a long GC or VM pause, swapping, SIGSTOP) does not know it when it wakes: it goes on with
the batch it was in, and what it produces then (changelog records written after the new owner
restored past them, outputs) lands behind the new owner's. Its changelog records then win the
next restore, and the new owner's updates are lost.

Offset commits are fenced by the broker (they carry the member's generation and are refused
after a rebalance); produced records are not, unless every write goes through Kafka
transactions (one transactional producer per input partition, read-committed readers
everywhere: a different worker). The worker keeps a lease instead:

- Every coordinator answer that proves membership (a heartbeat answered without error or with
  "rebalance in progress", a SyncGroup answered without error) renews the lease from the moment
  its request was sent: the coordinator received it later, so it cannot expire the member
  before `sent + session timeout`.
- Once the lease has run out, or the coordinator answered that this member is unknown, of an
  old generation or fenced, the membership is lost for good: a later rejoin does not renew it.
  The woken worker's agents, caches and sender still hold work computed for the partitions it
  had; after a rejoin (a new generation, maybe other partitions) that work is not its to write.
- Right before a produce request is written to the broker's socket, the lease is checked; once
  it is lost the worker stops at once, without writing or committing anything (exit code 70,
  as `fail_stop`). Its restart reads from the last commit; processing is idempotent.

The clock is CLOCK_BOOTTIME where Linux has it (it keeps counting through a suspend), else
the monotonic clock. What this does not cover: a pause that falls between the check and the
socket write (a few microseconds of Python), and a whole-machine pause during which this clock
stops too. Transactions would cover both.
"""
from __future__ import annotations

import time
from typing import Callable

from aiokafka.protocol.produce import ProduceRequest

REBALANCE_IN_PROGRESS = 27  # Kafka's error code: the member is still in the group
# The coordinator no longer knows this member as it was: unknown member, illegal generation,
# fenced static instance.
MEMBERSHIP_LOST = {25, 22, 82}


def _clock() -> Callable[[], float]:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        try:
            time.clock_gettime(boottime)
            return lambda: time.clock_gettime(boottime)
        except OSError:
            pass
    return time.monotonic


class MembershipLease:
    """How long the group coordinator surely still counts this worker as a member."""

    def __init__(self, session_timeout: float, on_expired: Callable[[str], None],
                 clock: Callable[[], float] | None = None) -> None:
        self.session_timeout = session_timeout
        self.clock = clock or _clock()
        self.on_expired = on_expired
        self.renewed_at: float | None = None  # None: never a member, so nothing to fence
        self.lost: str | None = None  # why the membership is lost for good
        self.fenced = 0  # produce requests refused (the worker stops at the first)

    def renew(self, sent_at: float) -> None:
        if self.lost is None and (self.renewed_at is None or sent_at > self.renewed_at):
            self.renewed_at = sent_at

    def remaining(self) -> float | None:
        """Seconds before the coordinator may expire this member (None: not a member yet)."""
        if self.renewed_at is None:
            return None
        return self.renewed_at + self.session_timeout - self.clock()

    def _ran_out(self) -> bool:
        left = self.remaining()
        if self.lost is None and left is not None and left <= 0:
            self.lost = (f"no heartbeat was answered for {self.session_timeout - left:.1f}s "
                         f"(session timeout {self.session_timeout:g}s)")
        return self.lost is not None

    def check(self, what: str) -> None:
        """Before a write: stop the worker when its membership may have been lost."""
        if self._ran_out():
            self.fenced += 1
            self.on_expired(f"{what}: {self.lost}, so the group may have given this worker's "
                            "partitions to another; it writes nothing more")

    # -- where it is wired in -------------------------------------------------------------

    def watch_coordinator(self, coordinator) -> None:
        """Renew on every coordinator answer that proves membership (aiokafka's group
        coordinator sends all its requests through `_send_req`)."""
        send = coordinator._send_req
        clock, renew = self.clock, self.renew

        async def send_req(request):
            sent_at = clock()
            self._ran_out()  # a request after a stall: lost before any answer can renew
            response = await send(request)
            name = type(request).__name__
            code = getattr(response, "error_code", None)
            if (name.startswith("HeartbeatRequest") and code in (0, REBALANCE_IN_PROGRESS)) \
                    or (name.startswith("SyncGroupRequest") and code == 0):
                renew(sent_at)
            elif code in MEMBERSHIP_LOST and self.lost is None:
                self.lost = f"the group coordinator answered {name} with error {code}"
            return response

        coordinator._send_req = send_req

    def guard_producer(self, client) -> None:
        """Check the lease right before each produce request goes to the broker (aiokafka's
        producer sends them through its client's `send`)."""
        send, check = client.send, self.check

        def guarded_send(node_id, request, *args, **kwargs):
            if isinstance(request, ProduceRequest):
                check(f"a produce request to broker {node_id}")
            return send(node_id, request, *args, **kwargs)

        client.send = guarded_send

    def as_dict(self) -> dict:
        left = self.remaining()
        return {"session_timeout_s": self.session_timeout,
                "lease_remaining_s": None if left is None else round(left, 3),
                "lost": self.lost, "fenced_writes": self.fenced}
