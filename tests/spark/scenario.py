"""A demo-sized run without Kafka: the demo's workload (members, visitors, merges by identify)
applied by the reference model under the example definitions (segments, the onboarding journey
with waits moved by the clock), written by the snapshot agent's own file writer as one full
snapshot and one delta per partition, and the applied events as the sidecar's event archive."""
from __future__ import annotations

import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cjo.workload import Workload
from sidecar.archive import SCHEMA as ARCHIVE_SCHEMA
from state.definitions import load_definitions
from state.durations import HOUR
from state.sql import event_rows
from tests.model import ReferenceModel
from topology.pipeline.snapshots import SnapshotFile

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
EVENTS = 5000  # the demo's default


def partition_of(pid: str) -> int:
    return zlib.crc32(pid.encode()) % PARTITIONS


class Scenario:
    def __init__(self, where: Path) -> None:
        self.defs = load_definitions((ROOT / "examples" / "definitions.yaml").read_text())
        self.model = ReferenceModel(self.defs)
        self.offsets = {p: 0 for p in range(PARTITIONS)}
        self.snapshots = where / "snapshots"
        self.archive = where / "archive"
        events = [e for _, e in Workload().events(EVENTS)]
        cut = len(events) * 3 // 5
        full = self._apply(events[:cut])
        files = {p: [self._write(p, "full", [pr for pid, pr in self.model.profiles.items()
                                             if partition_of(pid) == p])]
                 for p in range(PARTITIONS)}
        touched = self._apply(events[cut:]) | full
        for p in range(PARTITIONS):
            files[p].append(self._write(p, "delta", [self.model.profiles[pid] for pid in
                                                     sorted(touched) if partition_of(pid) == p]))
        self.manifests = [{"partition": p, "offset": self.offsets[p], "files": files[p]}
                          for p in range(PARTITIONS)]
        self.first_manifests = [{**m, "offset": m["files"][0]["offset"], "files": m["files"][:1]}
                                for m in self.manifests]

    def _apply(self, events: list[dict]) -> set[str]:
        """Apply events (and the waits due by each), archive them; the profiles touched."""
        rows, touched = [], set()
        for event in events:
            before = {pid: p["last_seen"] for pid, p in self.model.profiles.items()}
            self.model.wake_until(event["time"] - HOUR)
            visitor, user = event["visitor_id"], event["user_id"]
            target = user or self.model.alias.get(visitor) or visitor
            part = partition_of(target)
            offset = self.offsets[part]
            self.offsets[part] += 1
            self.model.apply(part, offset, event)
            # No identity step here, so no input forwarded twice: no source position.
            rows += [r + (part, offset, None, None) for r in event_rows(target, offset, event)]
            touched |= {pid for pid, p in self.model.profiles.items()
                        if before.get(pid, -1) != p["last_seen"]} | {target, visitor or target}
        touched.discard(None)
        for part in range(PARTITIONS):
            mine = [r for r in rows if r[-4] == part]
            if mine:
                path = self.archive / f"p{part:03d}" / f"{mine[0][-3]:012d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table({f.name: [r[i] for r in mine]
                                         for i, f in enumerate(ARCHIVE_SCHEMA)},
                                        schema=ARCHIVE_SCHEMA), path)
        return touched

    def _write(self, partition: int, kind: str, profiles: list[dict]) -> dict:
        # The model folds a visitor into its member without the topology's merge record: a
        # member that received a fold gets one, so its marker row says `merged` as the
        # stream's does (and the recount leaves it out).
        folded = {p["merged_into"] for p in self.model.profiles.values() if p["merged_into"]}
        out = SnapshotFile(self.snapshots, partition, self.offsets[partition], kind)
        out.add([{**p, "merges_done": p["merges_done"] or ["folded"]}
                 if p["profile_id"] in folded else p for p in profiles])
        return out.close()

    def stage_order(self) -> dict[tuple[str, int], list[str]]:
        return {(jid, n): [s.id for s in j.stages]
                for jid, versions in self.defs.journey_versions.items()
                for n, j in versions.items()}
