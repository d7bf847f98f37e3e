"""Reading whole partitions of a RocksDB table from a timer without holding up the agents: a
RocksDB snapshot is taken between two inputs (so what is read is the table exactly as of that
moment), then read in chunks, with the event loop (and the agents) running between them. Used by
the full journey snapshots and the live journey counts."""
from __future__ import annotations

import asyncio
import time
from itertools import islice
from typing import Callable

from topology.faust_fixes import stores_settled


def owned(topology, topic: str = "profile-inputs") -> list[int]:
    """The partitions of `topic` this worker is the active owner of."""
    name = topology.topics[topic].get_topic_name()
    return sorted(tp.partition for tp in topology.app.assignor.assigned_actives()
                  if tp.topic == name)


async def read_partition(topology, table, partition: int, chunk: int,
                         take: Callable[[list[dict]], None],
                         paused: Callable[[float], None] = lambda s: None) -> bool:
    """Hand the decoded values of `partition` to `take`, `chunk` at a time, as of the moment
    of the call; `paused` gets the seconds of each stretch without an await. False when the
    partition moved away meanwhile (the caller starts again later)."""
    started = time.perf_counter()
    view = table.data._db_for_partition(partition).snapshot()  # Faust's RocksDB store
    decode = topology.wire.decode_profile
    items = view.items()
    while True:
        batch = list(islice(items, chunk))
        take([decode(v) for k, v in batch if not k.startswith(b"__faust")])
        paused(time.perf_counter() - started)
        if len(batch) < chunk:
            return True
        await asyncio.sleep(0)  # the agents run here
        started = time.perf_counter()
        if partition not in owned(topology) or not stores_settled(topology.app):
            return False
