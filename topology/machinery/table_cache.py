"""A write-back cache of a Faust RocksDB table for a batch agent: the values the agent changed
stay decoded in memory across its batches, and are written (one RocksDB write batch per
partition, one changelog record per changed key) only when the cache is flushed.

The worker flushes before every offset commit (topology.machinery.faust_fixes.App calls
`before_flush` hooks when Faust flushes its producer ahead of a commit), before a timer reads the
table's RocksDB partitions (snapshots, live journey counts), and whenever more than `max_dirty`
keys wait. So what is committed was written first, and a crash loses only changes whose inputs are
read again. A key changed by every input in a session is decoded and encoded once per flush instead
of once per input (issue 8: "changelog once per key per commit"). Agents may also write the keys
changed longest ago as they go (`flush(older_than=...)`), so that a commit does not write
everything at once.

Readers that must see the latest value (the profile view) look in the cache first (`lookup`).
"""
from __future__ import annotations

from typing import Iterable

from topology.machinery.sending import Outgoing
from topology.machinery.table_batch import DELETED, TableBatch


class TableCache:
    def __init__(self, table, codec, max_dirty: int) -> None:
        self.table = table
        self.codec = codec
        self.max_dirty = max_dirty
        self.partitions: dict[int, TableBatch] = {}

    def partition(self, partition: int) -> TableBatch:
        batch = self.partitions.get(partition)
        if batch is None:
            batch = self.partitions[partition] = TableBatch(self.table, partition, self.codec)
        return batch

    @property
    def dirty(self) -> int:
        return sum(len(b.changed) for b in self.partitions.values())

    def lookup(self, key: str):
        """(True, value or None) if a partition holds an unwritten change of `key`."""
        for batch in self.partitions.values():
            value = batch.changed.get(key)
            if value is not None:
                return True, None if value is DELETED else value
        return False, None

    def flush(self, outgoing: Outgoing, older_than: float | None = None,
              partitions: Iterable[int] | None = None) -> dict[int, list]:
        """Write every change (or those first made before the monotonic time `older_than`; of
        `partitions` only, if given); their changelog records go to `outgoing`. Returns the
        keys written per partition."""
        chosen = self.partitions if partitions is None else {
            p: self.partitions[p] for p in partitions if p in self.partitions}
        return {p: batch.commit(outgoing, older_than) for p, batch in chosen.items()}

    def forget(self, partitions: set[int]) -> None:
        """Revoked partitions: unwritten changes are dropped with them (their inputs were not
        committed, so the next owner applies them again); a partition that comes back gets
        Faust's new database for it."""
        for p in partitions:
            self.partitions.pop(p, None)
