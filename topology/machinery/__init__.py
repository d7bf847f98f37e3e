"""What makes Faust keep our promises at speed, apart from the pipeline: batch agents fed by
the fetcher, ordered offsets and fail-stop, table writes once per key, the record sender, the
codecs on the wire, partition reads, and the worker's memory bounds (RocksDB, glibc)."""
