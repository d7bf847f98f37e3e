"""Journey waits as ordered wake-ups.

The profile agent keeps a due-time index (table `wakeups`, co-partitioned with profile-inputs,
keys sorted by due time). A timer on every worker reads the index of its own partitions up to
the current time and sends each due wait as a `wakeup` input to the profile's own partition, so
it is applied in order with the profile's other inputs. The index is maintained from the
profile's positions after every input (self-healing: a lost write is made again by the next
input of the profile, a redelivered one included); the agent removes an entry when its wake-up
arrives, stale or not.
"""
from __future__ import annotations

import logging
import time

from state.processing import waits
from topology.machinery.faust_fixes import stores_settled

log = logging.getLogger(__name__)
RESEND_AFTER = 10.0  # seconds before a wake-up not yet applied is sent again


def index_key(profile_id: str, journey: str, seq: int, due: int) -> str:
    return f"{due:013d}:{profile_id}:{journey}:{seq}"


def sync_index(index, before: set, profile: dict) -> None:
    """Make the index (the batch's writes to its partition, topology.machinery.table_batch) hold
    exactly the profile's current waits."""
    pid = profile["profile_id"]
    after = waits(profile)
    for journey, seq, due in before - after:
        index.delete(index_key(pid, journey, seq, due))
    for journey, seq, due in after:
        key = index_key(pid, journey, seq, due)
        if key not in index:
            index.put(key, {"profile_id": pid, "journey": journey, "seq": seq, "due": due})


class WakeupTimer:
    """Finds due entries in the index partitions this worker owns and sends their wake-ups."""

    def __init__(self, topology, index, clock, interval: float = 0.2) -> None:
        self.topology = topology
        self.index = index
        self.clock = clock
        self.interval = interval
        self.sent: dict[str, float] = {}

    def owned_partitions(self) -> list[int]:
        topic = self.topology.topics["profile-inputs"].get_topic_name()
        return sorted(tp.partition for tp in self.topology.app.assignor.assigned_actives()
                      if tp.topic == topic)

    def due_entries(self, now_ms: int, partitions: list[int]):
        store = self.index.data
        for partition in partitions:
            try:
                db = store._db_for_partition(partition)  # Faust's RocksDB store, per partition
            except Exception:  # not open yet (recovery): next tick
                continue
            for raw_key in db.keys():  # RocksDB iterates in key order: by due time
                key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                if key.startswith("__faust"):
                    continue
                if int(key[:13]) > now_ms:
                    break
                yield key

    async def tick(self) -> None:
        if not stores_settled(self.topology.app):
            return
        now_ms = self.clock.now_ms()
        wire = self.topology.wire
        send = self.topology.sender.send
        pending = 0
        owned = self.owned_partitions()  # what this tick reads, and says it read
        for key in list(self.due_entries(now_ms, owned)):
            pending += 1
            last = self.sent.get(key)
            if last is not None and time.monotonic() - last < RESEND_AFTER:
                continue
            due, _, rest = key.partition(":")
            profile_id, journey, seq = rest.rsplit(":", 2)
            record = {"kind": "wakeup", "profile_id": profile_id, "source_partition": -1,
                      "source_offset": -1, "event": None, "visitor_id": None, "member_id": None,
                      "merge_id": None, "state": None, "journey": journey, "seq": int(seq),
                      "due": int(due)}
            await send("profile-inputs", profile_id.encode(), wire.encode_input(record))
            self.sent[key] = time.monotonic()
        counters = self.topology.stats.counters
        counters["wakeups_pending_due"] = pending
        # When the owned partitions' index was last read: a pending count older than the
        # clock's last move (or the last rebalance) says nothing about the waits due now.
        counters["wakeups_checked_at"] = time.time()
        counters["wakeups_checked_partitions"] = owned
        if len(self.sent) > 100_000:
            self.sent.clear()
