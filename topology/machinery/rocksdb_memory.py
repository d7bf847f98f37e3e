"""One memory budget for all of a worker's RocksDB databases.

Faust opens one RocksDB database per table partition (8 partitions of 3 tables: 24 databases
per worker) and gives each its own block cache and memtables, with the index and filter blocks
of every table file held outside any cache. Bounded per database, memory still grows with the
number of partitions a worker owns and with the size of the state on disk. Here every database
shares one LRU cache that holds the data blocks, the index and filter blocks, and (charged to it
by one write buffer manager) the memtables: RocksDB's memory is the budget, whatever the
partitions and the number of profiles (RocksDB's "Write Buffer Manager" and "Block Cache"
guides describe this setup for many databases in one process).

Faust builds the options of each database from the table's `options`; a table whose options
name a `RocksDBMemory` as "memory" gets the shared budget (`BudgetedOptions`, which Faust's
store uses once `install()` ran).
"""
from __future__ import annotations

import rocksdict
from faust.stores import rocksdb as faust_rocksdb

# Of the budget, at most this share for memtables (the rest caches blocks read from disk).
MEMTABLE_SHARE = 0.5


class RocksDBMemory:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.cache = rocksdict.Cache(budget_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            int(budget_bytes * MEMTABLE_SHARE), False, self.cache)

    def usage(self) -> dict[str, int]:
        return {"budget_bytes": self.budget_bytes, "cache_bytes": self.cache.get_usage(),
                "memtable_bytes": self.write_buffers.get_usage()}


class BudgetedOptions(faust_rocksdb.RocksDBOptions):
    """Faust's RocksDB options, with the shared cache and write buffer manager when the table
    names a budget."""

    def as_options(self):
        memory = self.extra_options.get("memory")
        if memory is None or not self.use_rocksdict:
            return super().as_options()
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(memory.write_buffers)
        blocks = rocksdict.BlockBasedOptions()
        blocks.set_bloom_filter(self.bloom_filter_size, block_based=True)
        blocks.set_block_cache(memory.cache)
        # Index and filter blocks count against the budget too; those of the newest files
        # (level 0, read on every lookup) stay pinned, as RocksDB advises.
        blocks.set_cache_index_and_filter_blocks(True)
        blocks.set_pin_l0_filter_and_index_blocks_in_cache(True)
        blocks.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(blocks)
        return options


def install() -> None:
    """Make Faust's RocksDB store build its options with `BudgetedOptions`."""
    faust_rocksdb.RocksDBOptions = BudgetedOptions
