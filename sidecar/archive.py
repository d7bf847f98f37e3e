"""The event archive: every event the profile agent applies (the `event` and `identify` inputs
of the profile-inputs topic, keyed by canonical profile id) as rows of the long events table
that `state.sql` compiles conditions against, in Parquet files, so the full history is
available to SQL (`events` view).

A file holds one partition's inputs from one offset on and is named by that offset. Files are
written one at a time, and the next offset to read is committed in DuckDB after the file is in
place; after a crash the sidecar reads again from the committed offset and writes the same name,
which replaces the file it may have left behind. So the files never hold an input twice.

`seq` is the input's offset: the order in which the profile agent applied the profile's
inputs (one profile, one partition). `input_partition` and `input_offset` say where each row
came from, so a query can stop at a snapshot's offsets. `source_partition` and `source_offset`
are the input's own position in the events topic: an event the identity step forwarded twice
(it read the event again after a crash or a rebalance before its commit) is on profile-inputs
twice, at two offsets, with the same source, and the profile agent applies the first copy only
(state.processing, "Nothing applied twice"); the consistency check does the same. Files written
before these two columns read them as null.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import CodecError
from schemas.internal import ProfileInputCodec
from state.sql import event_rows

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("profile_id", pa.string()), ("event_id", pa.string()), ("seq", pa.int64()),
    ("name", pa.string()), ("time", pa.int64()), ("field", pa.string()),
    ("v_bool", pa.bool_()), ("v_long", pa.int64()), ("v_double", pa.float64()),
    ("v_string", pa.string()), ("input_partition", pa.int32()), ("input_offset", pa.int64()),
    ("source_partition", pa.int32()), ("source_offset", pa.int64())])
APPLIED_KINDS = ("event", "identify")  # the inputs whose event the profile agent records
FILES = "p*/*.parquet"  # under the archive directory


class EventArchive:
    OFFSETS = {"partition": "int", "offset": "bigint"}

    def __init__(self, db, directory: Path) -> None:
        from sidecar.engines import engine_of

        self.db, self.engine = db, engine_of(db)
        self.dir = Path(directory)
        self.db.execute(self.engine.create_table("archive_offsets", self.OFFSETS, "partition"))
        self.refresh_view()

    def offsets(self) -> dict[int, int]:
        """The next offset to archive, per profile-inputs partition."""
        return dict(self.db.execute(
            'SELECT "partition", "offset" FROM archive_offsets').fetchall())

    def add(self, partition: int, first: int, rows: list[tuple], next_offset: int) -> None:
        """Archive `rows` (events-table rows + input partition and offset + source partition
        and offset), read from `first` up to `next_offset` of the partition."""
        if rows:
            path = self.dir / f"p{partition:03d}" / f"{first:012d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            columns = {f.name: [r[i] for r in rows] for i, f in enumerate(SCHEMA)}
            tmp = path.with_suffix(".tmp")
            pq.write_table(pa.table(columns, schema=SCHEMA), tmp)
            tmp.rename(path)
        self.db.execute(self.engine.upsert("archive_offsets", self.OFFSETS, "partition"),
                        [partition, next_offset])
        if rows:
            self.refresh_view()

    def refresh_view(self) -> None:
        if self.engine.name == "spark":  # a view of this session over the files, read by Spark
            self.db.register_parquet("events", sorted(str(p) for p in self.dir.glob(FILES)),
                                     SCHEMA)
            return
        # Every column of SCHEMA, in its order, typed, also when no file matches (DuckDB refuses
        # a glob that matches nothing) or when the files are older than some columns (null).
        types = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
                 pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE"}
        source = "SELECT " + ", ".join(f"NULL::{types[f.type]} AS {f.name}"
                                       for f in SCHEMA) + " WHERE false"
        if any(self.dir.glob(FILES)):
            source += (f" UNION ALL BY NAME SELECT * FROM "
                       f"read_parquet('{self.dir}/{FILES}', union_by_name = true)")
        self.db.execute(f"CREATE OR REPLACE VIEW events AS {source}")


def events_dataset(directory: Path) -> ds.Dataset:
    """The archive's files as an Arrow dataset: the `events` view for a connection that may not
    read files itself (sidecar.sandbox)."""
    return ds.dataset(sorted(str(p) for p in Path(directory).glob(FILES)), schema=SCHEMA,
                      format="parquet")


def input_rows(record: dict, partition: int, offset: int) -> list[tuple]:
    """The archive rows of one decoded profile input, whose event comes decoded (none for
    inputs that carry no applied event)."""
    if record["kind"] not in APPLIED_KINDS or record["event"] is None:
        return []
    event = record["event"]
    where = (partition, offset, record["source_partition"], record["source_offset"])
    return [row + where for row in event_rows(record["profile_id"], offset, event)]


async def archive_to_end(settings, archive: EventArchive) -> int:
    """Archive the profile-inputs topic from the committed offsets to its current end; returns
    the number of events archived."""
    topic = settings.topic("profile-inputs")
    inputs = ProfileInputCodec(topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    archived = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        done = archive.offsets()
        for tp in tps:
            if tp.partition in done:
                consumer.seek(tp, done[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        ends = await consumer.end_offsets(tps)
        while behind := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*behind, timeout_ms=500, max_records=20000)
            for tp, records in batches.items():
                rows = []
                for r in records:
                    try:
                        record = inputs.decode(r.value)
                        rows += input_rows(record, tp.partition, r.offset)
                    except CodecError as exc:  # the stream dead-letters it; nothing applied
                        log.warning("not archived: %s[%d]@%d: %s", topic, tp.partition,
                                    r.offset, exc)
                        continue
                    archived += record["kind"] in APPLIED_KINDS
                archive.add(tp.partition, records[0].offset, rows, records[-1].offset + 1)
        return archived
    finally:
        await consumer.stop()

