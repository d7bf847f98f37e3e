"""The snapshot agent (step 5): for each profile-inputs partition this worker owns, it writes the
sparse journey state of the profiles changed since the last snapshot (a periodic full one every
`FULL_EVERY`) to a Parquet file, and publishes a manifest (files since the last full snapshot,
and the partition offset they reflect) to the compacted snapshots topic for the sidecar.

A snapshot is taken between two inputs of the profile agent (same event loop, no await while
reading), so it reflects exactly the inputs before its offset. Its pause is measured."""
from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from pathlib import Path

from state.sparse import COLUMNS, sparse_rows
from topology.faust_fixes import stores_settled

log = logging.getLogger(__name__)
FULL_EVERY = 10  # every tenth snapshot of a partition is a full one


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

    def _all_profiles(self, partition: int):
        decode = self.topology.wire.decode_profile
        db = self.profiles.data._db_for_partition(partition)  # Faust's RocksDB store
        for key, value in db.items():
            if not key.startswith(b"__faust"):
                yield decode(value)

    async def tick(self) -> None:
        if not stores_settled(self.topology.app):
            return
        stats = self.topology.stats.counters
        for partition in self._owned():
            if partition not in self.next_offset:
                continue  # nothing applied on this worker yet
            started = time.perf_counter()
            full = partition not in self.files or self.taken[partition] % FULL_EVERY == 0
            if not full and not self.dirty[partition]:
                continue
            if full:
                chosen = list(self._all_profiles(partition))
            else:
                chosen = [p for p in map(self.profiles.get, sorted(self.dirty[partition])) if p]
            self.dirty[partition] = set()
            offset = self.next_offset[partition]
            entry = self._write(partition, offset, full, chosen)
            pause_ms = (time.perf_counter() - started) * 1000
            stats["snapshot_last_ms"] = round(pause_ms, 1)
            stats["snapshot_max_pause_ms"] = max(stats["snapshot_max_pause_ms"],
                                                 round(pause_ms, 1))
            stats["snapshots"] += 1
            self.taken[partition] += 1
            self.files[partition] = ([entry] if full else self.files[partition] + [entry])
            manifest = {"partition": partition, "offset": offset,
                        "created_at": int(time.time() * 1000), "files": self.files[partition]}
            codec = self.topology.wire.codecs["snapshots"]
            await self.topology.topics["snapshots"].send(key=str(partition).encode(),
                                                        value=codec.encode(manifest))

    def _write(self, partition: int, offset: int, full: bool, profiles: list[dict]) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = []
        for profile in profiles:
            # A marker row per profile: in a delta, these profiles' earlier rows are replaced.
            rows.append((profile["profile_id"], None, None, "profile", None, None, None))
            rows += sparse_rows(profile)
        columns = {name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)}
        table = pa.table(columns, schema=pa.schema([
            ("profile_id", pa.string()), ("journey", pa.string()), ("version", pa.int32()),
            ("key", pa.string()), ("first", pa.int64()), ("last_left", pa.int64()),
            ("value", pa.string())]))
        kind = "full" if full else "delta"
        path = self.dir / f"p{partition:03d}" / f"{offset:012d}-{kind}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.rename(path)
        return {"path": str(path), "kind": kind, "offset": offset, "profiles": len(profiles),
                "rows": len(rows), "sha256": digest}
