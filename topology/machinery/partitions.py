"""Reading a partition of a RocksDB table from a timer without holding up the agents: a RocksDB
snapshot is taken between two inputs (what is read is the table exactly as of that moment),
then read in chunks; after each chunk the agents get at least as long as the chunk took (at
most 50 ms), so a large read neither blocks them for long nor starves them. Used by the journey
snapshots and the live journey counts."""
from __future__ import annotations

import asyncio
import time
from itertools import islice
from typing import Callable, Iterable

from topology.machinery.faust_fixes import stores_settled

MAX_YIELD = 0.05  # seconds the agents get after a chunk, at most


def owned(topology, topic: str = "profile-inputs") -> list[int]:
    """The partitions of `topic` this worker is the active owner of."""
    name = topology.topics[topic].get_topic_name()
    return sorted(tp.partition for tp in topology.app.assignor.assigned_actives()
                  if tp.topic == name)


def _values(view, keys: Iterable[bytes] | None):
    if keys is None:
        yield from ((k, v) for k, v in view.items() if not k.startswith(b"__faust"))
        return
    for key in keys:
        try:
            yield key, view[key]
        except Exception:  # rocksdict raises a bare Exception for a missing key
            continue


async def read_partition(topology, table, partition: int, *, decode: Callable[[bytes], dict],
                         take: Callable[[list[dict]], None],
                         valid: Callable[[], bool],
                         paused: Callable[[float], None] = lambda s: None,
                         keys: Iterable[bytes] | None = None) -> bool:
    """Hand the decoded values of `partition` (or of its `keys` only) to `take`, a chunk of
    `snapshot_chunk` at a time, as they were at the moment of the call; `paused` gets the
    seconds of each stretch without an await. Between chunks, `valid()` says whether the read
    still makes sense (the partition was not revoked meanwhile); False when it stopped."""
    started = time.perf_counter()
    written = topology.write_tables()  # the agents' cached changes first, with no await ...
    view = table.data._db_for_partition(partition).snapshot()  # ... before this (Faust's store)
    await topology.sender.submit(written)  # their changelog records
    values = _values(view, keys)
    chunk = topology.settings.snapshot_chunk
    while True:
        batch = list(islice(values, chunk))
        take([decode(v) for _, v in batch])
        took = time.perf_counter() - started
        paused(took)
        if len(batch) < chunk:
            return True
        await asyncio.sleep(min(took, MAX_YIELD))  # the agents run here
        started = time.perf_counter()
        if not valid() or not stores_settled(topology.app):
            return False
