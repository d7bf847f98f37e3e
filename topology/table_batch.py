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

from faust.types import TP
from rocksdict import WriteBatch

from topology.sending import Outgoing

DELETED = object()


class TableBatch:
    def __init__(self, table, partition: int, codec) -> None:
        self.store = table.data  # Faust's RocksDB store
        self.db = self.store._db_for_partition(partition)
        self.partition = partition
        self.changelog = table.changelog_topic.get_topic_name()
        self.codec = codec
        self.changed: dict[str, object] = {}

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
        self.changed[key] = value

    def delete(self, key: str) -> None:
        self.changed[key] = DELETED

    def commit(self, outgoing: Outgoing, encoded: dict[str, bytes] | None = None) -> None:
        """Write every changed key and add its changelog record to `outgoing`; `encoded` may
        hold values already encoded."""
        if not self.changed:
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in self.changed.items():
            raw_key = key.encode()
            if value is DELETED:
                batch.delete(raw_key)
                outgoing.add(self.changelog, raw_key, None, self.partition)
                continue
            data = (encoded or {}).get(key)
            if data is None:
                data = self.codec.encode(value)
            batch.put(raw_key, data)
            outgoing.add(self.changelog, raw_key, data, self.partition)
        self.db.write(batch)
        outgoing.on_sent[self.changelog] = self._persisted
        self.changed = {}

    def _persisted(self, topic: str, partition: int, offset: int) -> None:
        if partition in self.store._dbs:  # not revoked meanwhile (that would open it again)
            self.store.set_persisted_offset(TP(topic, partition), offset)
