"""The writes a batch agent makes to one partition of a Faust RocksDB table, made once per key.

Reads go through the batch's own writes first, then to the partition's RocksDB database (Faust's
store keeps one per partition). At the end of the batch (`commit`) every changed key is written
once: one RocksDB write batch, and one changelog record per changed key (the latest value, or a
tombstone) to the changelog partition of the same number, as Faust's table would send. Faust's
store is told the changelog offset it has persisted up to when the records are acknowledged, as
it is for its own writes, so a restart replays only the changelog's tail.

A Faust table refuses writes outside the current stream event (it takes the partition from it),
and writes the store and sends a changelog record on every assignment: one batch of inputs
often changes a key several times."""
from __future__ import annotations

from itertools import takewhile
from time import monotonic

from faust.types import TP
from rocksdict import WriteBatch

from topology.machinery.sending import Outgoing

DELETED = object()


class TableBatch:
    def __init__(self, table, partition: int, codec) -> None:
        self.store = table.data  # Faust's RocksDB store
        self.db = self.store._db_for_partition(partition)
        self.partition = partition
        self.changelog = table.changelog_topic.get_topic_name()
        self.codec = codec
        self.changed: dict[str, object] = {}
        self.first_changed: dict[str, float] = {}

    def get(self, key: str):
        value = self.changed.get(key)
        if value is DELETED:
            return None
        if value is not None:
            return value
        data = self.db.get(key.encode())
        return None if data is None else self.codec.decode(data)

    def __contains__(self, key: str) -> bool:
        value = self.changed.get(key)
        if value is not None:
            return value is not DELETED
        return self.db.get(key.encode()) is not None

    def put(self, key: str, value) -> None:
        if key not in self.changed:
            self.first_changed[key] = monotonic()
        self.changed[key] = value

    def delete(self, key: str) -> None:
        self.put(key, DELETED)

    def commit(self, outgoing: Outgoing, older_than: float | None = None) -> list[str]:
        """Write the changed keys (only those first changed before the monotonic time
        `older_than`, if given) and add their changelog records to `outgoing`; returns them."""
        if older_than is None:
            keys = list(self.changed)
        else:  # the dict keeps keys in the order of their first change
            keys = list(takewhile(lambda k: self.first_changed[k] < older_than, self.changed))
        if not keys:
            return keys
        batch = WriteBatch(raw_mode=True)
        for key in keys:
            value = self.changed.pop(key)
            del self.first_changed[key]
            raw_key = key.encode()
            if value is DELETED:
                batch.delete(raw_key)
                outgoing.add(self.changelog, raw_key, None, self.partition)
                continue
            data = self.codec.encode(value)
            batch.put(raw_key, data)
            outgoing.add(self.changelog, raw_key, data, self.partition)
        self.db.write(batch)
        outgoing.on_sent[self.changelog] = self._persisted
        return keys

    def _persisted(self, topic: str, partition: int, offset: int) -> None:
        if partition in self.store._dbs:  # not revoked meanwhile (that would open it again)
            self.store.set_persisted_offset(TP(topic, partition), offset)
