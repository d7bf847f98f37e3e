"""The snapshot agent (step 5): for each profile-inputs partition this worker owns, it writes the
sparse journey state of the profiles changed since the last snapshot (a periodic full one every
`FULL_EVERY`) to a Parquet file, and publishes a manifest (files since the last full snapshot,
and the partition offset they reflect) to the compacted snapshots topic for the sidecar.

A delta is read between two inputs of the profile agent (same event loop, no await while
reading), so it reflects exactly the inputs before its offset. A full snapshot reads a RocksDB
snapshot of the partition taken between two inputs, in chunks with the profile agent running in
between: it reflects exactly the inputs before the offset at which it was taken, and what
changes meanwhile goes to the next delta. The longest pause either causes is measured."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq
from pathlib import Path

from state.sparse import COLUMNS, profile_rows
from topology.faust_fixes import stores_settled

log = logging.getLogger(__name__)
FULL_EVERY = 10  # every tenth snapshot of a partition is a full one
SCHEMA = pa.schema([
    ("profile_id", pa.string()), ("journey", pa.string()), ("version", pa.int32()),
    ("key", pa.string()), ("first", pa.int64()), ("last_left", pa.int64()),
    ("value", pa.string())])


class Snapshotter:
    def __init__(self, topology, profiles) -> None:
        self.topology = topology
        self.profiles = profiles
        self.dir = Path(topology.settings.snapshots) / topology.settings.app_id
        self.dirty: dict[int, set[str]] = defaultdict(set)
        self.next_offset: dict[int, int] = {}
        self.files: dict[int, list[dict]] = {}
        self.taken: dict[int, int] = defaultdict(int)

    def touched(self, partition: int, offset: int, profile_id: str) -> None:
        """The profile agent applied `offset` to `profile_id` (called right after the write)."""
        self.dirty[partition].add(profile_id)
        self.next_offset[partition] = offset + 1

    def _owned(self) -> list[int]:
        topic = self.topology.topics["profile-inputs"].get_topic_name()
        return sorted(tp.partition for tp in self.topology.app.assignor.assigned_actives()
                      if tp.topic == topic)

    async def tick(self) -> None:
        if not stores_settled(self.topology.app):
            return
        for partition in self._owned():
            if partition not in self.next_offset:
                continue  # nothing applied on this worker yet
            if partition not in self.files or self.taken[partition] % FULL_EVERY == 0:
                entry = await self._full(partition)
            elif self.dirty[partition]:
                entry = self._delta(partition)
            else:
                continue
            if entry is None:
                continue  # given up (the partition moved); tried again next time
            self.taken[partition] += 1
            files = [entry] if entry["kind"] == "full" else self.files[partition] + [entry]
            self.files[partition] = files
            manifest = {"partition": partition, "offset": entry["offset"],
                        "created_at": int(time.time() * 1000), "files": files}
            codec = self.topology.wire.codecs["snapshots"]
            await self.topology.topics["snapshots"].send(key=str(partition).encode(),
                                                        value=codec.encode(manifest))
            self.topology.stats.counters["snapshots"] += 1
            self.topology.stats.counters["snapshot_last_at"] = time.time()

    def _paused(self, started: float) -> None:
        pause_ms = round((time.perf_counter() - started) * 1000, 1)
        stats = self.topology.stats.counters
        stats["snapshot_last_pause_ms"] = pause_ms
        stats["snapshot_max_pause_ms"] = max(stats["snapshot_max_pause_ms"], pause_ms)

    def _delta(self, partition: int) -> dict:
        started = time.perf_counter()
        chosen = [p for p in map(self.profiles.get, sorted(self.dirty[partition])) if p]
        self.dirty[partition] = set()
        out = SnapshotFile(self.dir, partition, self.next_offset[partition], "delta")
        out.add(chosen)
        entry = out.close()
        self._paused(started)
        return entry

    async def _full(self, partition: int) -> dict | None:
        started = time.perf_counter()
        # Faust's RocksDB store for the partition; a RocksDB snapshot is a consistent view.
        view = self.profiles.data._db_for_partition(partition).snapshot()
        offset = self.next_offset[partition]
        self.dirty[partition] = set()  # later changes go to the next delta
        out = SnapshotFile(self.dir, partition, offset, "full")
        decode = self.topology.wire.decode_profile
        items = view.items()
        chunk_size = self.topology.settings.snapshot_chunk
        begun = time.monotonic()
        while True:
            chunk = list(islice(items, chunk_size))
            out.add([decode(v) for k, v in chunk if not k.startswith(b"__faust")])
            self._paused(started)
            if len(chunk) < chunk_size:
                break
            await asyncio.sleep(0)  # the profile agent runs here
            started = time.perf_counter()
            if partition not in self._owned() or not stores_settled(self.topology.app):
                out.abandon()
                return None
        entry = out.close()
        self.topology.stats.counters["snapshot_full_s"] = round(time.monotonic() - begun, 3)
        return entry


class SnapshotFile:
    """One Parquet file of a snapshot, written chunk by chunk (a row group each) to a temporary
    name and renamed into place when complete."""

    def __init__(self, directory: Path, partition: int, offset: int, kind: str) -> None:
        self.kind, self.offset, self.profiles, self.rows = kind, offset, 0, 0
        self.path = directory / f"p{partition:03d}" / f"{offset:012d}-{kind}.parquet"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_suffix(".tmp")
        self.writer = pq.ParquetWriter(self.tmp, SCHEMA)

    def add(self, profiles: list[dict]) -> None:
        rows = []
        for profile in profiles:
            rows += profile_rows(profile)
        if rows:
            columns = {name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)}
            self.writer.write_table(pa.table(columns, schema=SCHEMA))
        self.profiles += len(profiles)
        self.rows += len(rows)

    def close(self) -> dict:
        self.writer.close()
        digest = hashlib.sha256()
        with open(self.tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        self.tmp.rename(self.path)
        return {"path": str(self.path), "kind": self.kind, "offset": self.offset,
                "profiles": self.profiles, "rows": self.rows, "sha256": digest.hexdigest()}

    def abandon(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)
