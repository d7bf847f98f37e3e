"""A batch agent's writes to a RocksDB table partition: read through, written once per key (one
RocksDB write batch, one changelog record per changed key, tombstones for deletions), and, in
the write-back cache, kept across batches until flushed (oldest first when asked)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from rocksdict import Options, Rdict

from topology.machinery.sending import Outgoing
from topology.machinery.table_batch import TableBatch
from topology.machinery.table_cache import TableCache


class JsonCodec:
    def encode(self, value) -> bytes:
        return json.dumps(value, sort_keys=True).encode()

    def decode(self, data: bytes):
        return json.loads(data)


class Store:
    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self._dbs: dict[int, Rdict] = {}
        self.persisted: dict = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = Rdict(str(self.tmp_path / f"p{partition}"),
                                         Options(raw_mode=True))
        return self._dbs[partition]

    def set_persisted_offset(self, tp, offset: int) -> None:
        self.persisted[tp] = offset


def table(tmp_path):
    return SimpleNamespace(
        data=Store(tmp_path),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-profiles-changelog"))


def test_reads_see_the_batch_own_writes_before_the_store(tmp_path):
    t = table(tmp_path)
    t.data._db_for_partition(3)[b"u1"] = JsonCodec().encode({"n": 1})
    batch = TableBatch(t, 3, JsonCodec())
    assert batch.get("u1") == {"n": 1}
    batch.put("u1", {"n": 2})
    assert batch.get("u1") == {"n": 2} and "u1" in batch
    batch.delete("u1")
    assert batch.get("u1") is None and "u1" not in batch
    assert t.data._db_for_partition(3)[b"u1"] == JsonCodec().encode({"n": 1})  # not yet


def test_a_key_changed_many_times_is_written_once_with_one_changelog_record(tmp_path):
    t = table(tmp_path)
    batch = TableBatch(t, 3, JsonCodec())
    for n in range(5):
        batch.put("u1", {"n": n})
    batch.put("u2", {"n": 9})
    batch.delete("gone")
    outgoing = Outgoing()
    assert batch.commit(outgoing) == ["u1", "u2", "gone"]
    db = t.data._db_for_partition(3)
    assert json.loads(db[b"u1"]) == {"n": 4} and json.loads(db[b"u2"]) == {"n": 9}
    assert outgoing.records == [
        ("app-profiles-changelog", 3, b"u1", JsonCodec().encode({"n": 4})),
        ("app-profiles-changelog", 3, b"u2", JsonCodec().encode({"n": 9})),
        ("app-profiles-changelog", 3, b"gone", None)]  # a tombstone
    assert batch.changed == {} and batch.commit(Outgoing()) == []


def test_the_store_learns_the_changelog_offset_once_the_records_are_acknowledged(tmp_path):
    t = table(tmp_path)
    batch = TableBatch(t, 3, JsonCodec())
    batch.put("u1", {"n": 1})
    outgoing = Outgoing()
    batch.commit(outgoing)
    outgoing.on_sent["app-profiles-changelog"]("app-profiles-changelog", 3, 41)
    assert [(tp.topic, tp.partition, o) for tp, o in t.data.persisted.items()] == [
        ("app-profiles-changelog", 3, 41)]


def test_older_than_writes_only_the_keys_changed_first_before_it_in_that_order(tmp_path,
                                                                              monkeypatch):
    clock = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr("topology.machinery.table_batch.monotonic", lambda: next(clock))
    batch = TableBatch(table(tmp_path), 0, JsonCodec())
    batch.put("a", {"n": 1})  # first changed at 1.0
    batch.put("b", {"n": 1})  # 2.0
    batch.put("a", {"n": 2})  # changed again: still first changed at 1.0
    batch.put("c", {"n": 1})  # 3.0
    assert batch.commit(Outgoing(), older_than=2.5) == ["a", "b"]
    assert list(batch.changed) == ["c"]


def test_the_cache_keeps_changes_across_batches_and_finds_them_for_readers(tmp_path):
    cache = TableCache(table(tmp_path), JsonCodec(), max_dirty=10)
    cache.partition(1).put("u1", {"n": 1})
    cache.partition(2).delete("u2")
    assert cache.partition(1).get("u1") == {"n": 1}  # the same partition's writes, later on
    assert cache.lookup("u1") == (True, {"n": 1})
    assert cache.lookup("u2") == (True, None)
    assert cache.lookup("u3") == (False, None)
    assert cache.dirty == 2
    written = cache.flush(Outgoing())
    assert written == {1: ["u1"], 2: ["u2"]} and cache.dirty == 0
    assert cache.lookup("u1") == (False, None)


def test_a_revoked_partition_leaves_the_cache_with_its_unwritten_changes(tmp_path):
    cache = TableCache(table(tmp_path), JsonCodec(), max_dirty=10)
    cache.partition(1).put("u1", {"n": 1})
    cache.forget({1})
    assert cache.lookup("u1") == (False, None) and cache.dirty == 0


def test_the_cache_writes_the_partitions_asked_for_and_skips_those_it_does_not_hold(tmp_path):
    """Before a commit the profile agent writes its cache a partition at a time."""
    cache = TableCache(table(tmp_path), JsonCodec(), max_dirty=10)
    cache.partition(1).put("u1", {"n": 1})
    cache.partition(2).put("u2", {"n": 2})
    outgoing = Outgoing()
    assert cache.flush(outgoing, partitions=(2, 5)) == {2: ["u2"]}  # 5: revoked meanwhile
    assert [(key, partition) for _, partition, key, _ in outgoing.records] == [(b"u2", 2)]
    assert cache.lookup("u1") == (True, {"n": 1}) and cache.dirty == 1
