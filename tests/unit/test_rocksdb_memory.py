"""A worker's RocksDB databases share one memory budget (topology.machinery.rocksdb_memory): one
cache holds the blocks read, the index and filter blocks and (charged to it) the memtables of every
database, so their memory is the budget whatever the number of databases and the data on disk."""
from faust.stores import rocksdb as faust_rocksdb

from topology.machinery.rocksdb_memory import BudgetedOptions, RocksDBMemory, install

MB = 1024 * 1024
VALUE = b"x" * 4000


def _open(path, memory):
    options = BudgetedOptions(write_buffer_size=MB, max_write_buffer_number=2, memory=memory)
    return options.open(path)


def _key(i: int) -> bytes:
    return i.to_bytes(4, "big")


def test_every_database_is_charged_to_the_one_budget(tmp_path):
    memory = RocksDBMemory(16 * MB)
    first, second = _open(tmp_path / "a", memory), _open(tmp_path / "b", memory)
    for i in range(100):
        first[_key(i)] = VALUE
    one = memory.usage()["memtable_bytes"]
    assert one > 0 and memory.usage()["cache_bytes"] >= one
    for i in range(100):
        second[_key(i)] = VALUE
    assert memory.usage()["memtable_bytes"] > one  # the second database's memtable counts too
    first.close(), second.close()


def test_the_cache_stays_within_the_budget_however_much_is_stored(tmp_path):
    memory = RocksDBMemory(16 * MB)  # above the memtables' own bound (4 x 2 x 1 MB)
    dbs = [_open(tmp_path / str(n), memory) for n in range(4)]
    n = 12_000  # 48 MB of values: three times the budget
    for i in range(n):
        dbs[i % 4][_key(i)] = VALUE
    for i in range(n):  # read back from disk: blocks, index and filter blocks go to the cache
        assert dbs[i % 4][_key(i)] == VALUE
    usage = memory.usage()
    assert usage["memtable_bytes"] > 0
    assert 12 * MB <= usage["cache_bytes"] <= 16 * MB * 1.05  # full of blocks, and no more
    for db in dbs:
        db.close()


def test_faust_store_uses_the_budgeted_options():
    install()
    assert faust_rocksdb.RocksDBOptions is BudgetedOptions
