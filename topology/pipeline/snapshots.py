"""The snapshot agent (step 5): for each profile-inputs partition this worker owns, it writes the
sparse journey state of the profiles changed since the last snapshot (a periodic full one every
`FULL_EVERY`) to a Parquet file, and publishes a manifest (files since the last full snapshot,
and the partition offset they reflect) to the compacted snapshots topic for the sidecar.

Both kinds read a RocksDB snapshot of the partition taken between two inputs of the profile
agent (topology.machinery.partitions), in chunks with the agent running in between: a snapshot reflects
exactly the inputs before the offset at which it was taken, and what changes meanwhile goes to
the next delta. Only the fields the rows need are decoded. The longest stretch a snapshot holds
up the agent is measured (`snapshot_max_pause_ms`); closing and hashing the file happen in a
thread.

The snapshot directory (`CJO_SNAPSHOT_DIR`) is a local path, or a URI of any filesystem pyarrow
knows (`file://`, `s3://`, `gs://`, `abfs://`, `hdfs://`; `SharedDir`), so that workers on
several machines and the sidecar share it: the manifest names each file by the same URI, which
the sidecar reads through the same pyarrow call (sidecar.store.read_file). Nothing deletes old
snapshot files, on either kind of directory."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections import defaultdict
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.parquet as pq
from pathlib import Path

from state.sparse import COLUMNS, SNAPSHOT_FIELDS, profile_rows
from topology.machinery.faust_fixes import stores_settled
from topology.machinery.partitions import owned, read_partition

log = logging.getLogger(__name__)
FULL_EVERY = 10  # every tenth snapshot of a partition is a full one
# The columns of state.sparse.COLUMNS; `last_reached` came last, so files written before it
# are these columns minus that one (the sidecar reads them as null).
SCHEMA = pa.schema([
    ("profile_id", pa.string()), ("journey", pa.string()), ("version", pa.int32()),
    ("key", pa.string()), ("first", pa.int64()), ("last_left", pa.int64()),
    ("value", pa.string()), ("last_reached", pa.int64())])
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # a scheme: file://, s3://, gs://, abfs://...


def snapshot_dir(where: str, app_id: str) -> "Path | SharedDir":
    """The app's snapshot directory: a local Path, or a SharedDir when `where` is a URI."""
    return SharedDir(where).child(app_id) if URI.match(where) else Path(where) / app_id


class SharedDir:
    """A snapshot directory named by a URI, written through `pyarrow.fs.FileSystem.from_uri`.
    Joining a name keeps the URI's query (an S3 `region` or `endpoint_override`). Credentials
    come from the environment as pyarrow reads them (AWS_*, GOOGLE_APPLICATION_CREDENTIALS,
    AZURE_STORAGE_*), never from the URI: the manifests, which anyone reading the snapshots
    topic sees, carry it."""

    def __init__(self, uri: str, _parts=None) -> None:
        from pyarrow import fs

        parts = urlsplit(uri)
        if parts.password:
            raise ValueError("a snapshot URI must not hold a password: manifests carry the URI; "
                             "give the filesystem's credentials in the environment")
        self.uri = uri
        self.filesystem, self.path = _parts or fs.FileSystem.from_uri(uri)
        self.made: set[str] = set()  # directories created by this process (shared by children)

    def child(self, name: str) -> "SharedDir":
        parts = urlsplit(self.uri)
        uri = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name))
        out = SharedDir(uri, (self.filesystem, self.path.rstrip("/") + "/" + name))
        out.made = self.made
        return out

    def make(self) -> None:
        """Create the directory (on an object store, an empty marker object), once per process."""
        if self.path not in self.made:
            self.filesystem.create_dir(self.path, recursive=True)
            self.made.add(self.path)

    def __str__(self) -> str:
        return self.uri


class Snapshotter:
    def __init__(self, topology, profiles) -> None:
        self.topology = topology
        self.profiles = profiles
        self.dir = snapshot_dir(topology.settings.snapshots, topology.settings.app_id)
        self.dirty: dict[int, set[str]] = defaultdict(set)
        self.next_offset: dict[int, int] = {}
        self.files: dict[int, list[dict]] = {}
        self.taken: dict[int, int] = defaultdict(int)
        self.generation: dict[int, int] = defaultdict(int)  # grows when a partition is revoked
        self.decode = topology.wire.profile.projection(SNAPSHOT_FIELDS)

    def touched(self, partition: int, offset: int, profile_id: str) -> None:
        """The profile agent applied `offset` to `profile_id` (called right after the write)."""
        self.dirty[partition].add(profile_id)
        self.next_offset[partition] = offset + 1

    def _owned(self) -> list[int]:
        return owned(self.topology)

    def forget(self, partitions: set[int]) -> None:
        """Partitions revoked: another worker may change them before they come back, so what
        this worker knows of them is void, and a snapshot of them under way is abandoned; the
        first snapshot after they come back is a full one."""
        for p in partitions:
            self.generation[p] += 1
            for known in (self.files, self.dirty, self.taken, self.next_offset):
                known.pop(p, None)

    async def tick(self) -> None:
        if not stores_settled(self.topology.app):
            return
        for partition in self._owned():
            if partition not in self.next_offset:
                continue  # nothing applied on this worker yet
            if partition not in self.files or self.taken[partition] % FULL_EVERY == 0:
                entry = await self._write(partition, "full")
            elif self.dirty[partition]:
                keys = [pid.encode() for pid in sorted(self.dirty[partition])]
                entry = await self._write(partition, "delta", keys)
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
            await self.topology.sender.send("snapshots", str(partition).encode(),
                                            codec.encode(manifest))
            self.topology.stats.counters["snapshots"] += 1
            self.topology.stats.counters["snapshot_last_at"] = time.time()

    def _paused(self, seconds: float) -> None:
        pause_ms = round(seconds * 1000, 1)
        stats = self.topology.stats.counters
        stats["snapshot_last_pause_ms"] = pause_ms
        stats["snapshot_max_pause_ms"] = max(stats["snapshot_max_pause_ms"], pause_ms)

    async def _write(self, partition: int, kind: str, keys=None) -> dict | None:
        """Write the profiles of the partition changed since the last snapshot (`keys`), or
        all of them, as they are now; the changes from now on go to the next delta."""
        offset = self.next_offset[partition]
        changed, self.dirty[partition] = self.dirty[partition], set()
        generation = self.generation[partition]
        out = open_snapshot_file(self.dir, partition, offset, kind)
        begun = time.monotonic()
        done = await read_partition(
            self.topology, self.profiles, partition, decode=self.decode, take=out.add,
            paused=self._paused, keys=keys,
            valid=lambda: self.generation[partition] == generation)
        if not done or self.generation[partition] != generation:
            await asyncio.to_thread(out.abandon)
            if self.generation[partition] == generation:
                self.dirty[partition] |= changed  # still ours: the next delta takes them
            return None
        entry = await asyncio.to_thread(out.close)  # closing and hashing block on the disk
        if self.generation[partition] != generation:
            return None  # revoked while closing: a newer owner publishes its own
        self.topology.stats.counters[f"snapshot_{kind}_s"] = round(time.monotonic() - begun, 3)
        return entry


class SnapshotFile:
    """One Parquet file of a snapshot, written chunk by chunk (a row group each). In a local
    directory, to a temporary name and renamed into place when complete; in a SharedDir, see
    SharedSnapshotFile."""

    def __init__(self, directory: Path, partition: int, offset: int, kind: str) -> None:
        self.kind, self.offset, self.profiles, self.rows = kind, offset, 0, 0
        self.path = directory / f"p{partition:03d}" / f"{offset:012d}-{kind}.parquet"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_suffix(".tmp")
        # hashed as the bytes go out, as in a SharedDir: no read back of the file at close
        self.sink = _Hashing(pa.OSFile(str(self.tmp), "wb"))
        self.writer = pq.ParquetWriter(self.sink, SCHEMA)

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
        self.sink.stream.close()
        self.tmp.rename(self.path)
        return self._entry(str(self.path), self.sink.digest.hexdigest())

    def _entry(self, path: str, sha256: str) -> dict:
        return {"path": path, "kind": self.kind, "offset": self.offset,
                "profiles": self.profiles, "rows": self.rows, "sha256": sha256}

    def abandon(self) -> None:
        try:
            self.writer.close()
            self.sink.stream.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class SharedSnapshotFile(SnapshotFile):
    """A snapshot file in a directory named by URI, written through the filesystem's output
    stream and hashed as the bytes go out (no read back of a remote object).

    It is written under its final name, with no temporary name and move: on object stores a
    move is a copy and a delete (twice the bytes, and not atomic), and S3, GCS and Azure show an
    object only once its stream is closed anyway. What publishes a file is the manifest record,
    sent only after the file was written and closed; the sidecar reads only files a manifest
    names, and checks their SHA-256. The name carries a random token so that two writers of one
    partition (an owner not yet told of a revoke, and the new one) never overwrite or delete
    each other's file; a file abandoned or cut short by a crash is named by no manifest.
    Opening the stream (and creating the partition's directory, once) happens in the agent's
    loop as the local mkdir does: on an object store, a round trip per snapshot file."""

    def __init__(self, directory: SharedDir, partition: int, offset: int, kind: str) -> None:
        self.kind, self.offset, self.profiles, self.rows = kind, offset, 0, 0
        folder = directory.child(f"p{partition:03d}")
        folder.make()
        name = f"{offset:012d}-{kind}-{uuid.uuid4().hex[:12]}.parquet"
        self.file = folder.child(name)
        self.sink = _Hashing(self.file.filesystem.open_output_stream(self.file.path))
        self.writer = pq.ParquetWriter(self.sink, SCHEMA)

    def close(self) -> dict:
        self.writer.close()
        self.sink.stream.close()  # an object store completes the upload here
        return self._entry(self.file.uri, self.sink.digest.hexdigest())

    def abandon(self) -> None:
        try:
            self.writer.close()
            self.sink.stream.close()
        finally:
            try:
                self.file.filesystem.delete_file(self.file.path)
            except OSError:
                log.warning("could not delete the abandoned snapshot file %s", self.file.uri)


def open_snapshot_file(directory: "Path | SharedDir", partition: int, offset: int,
                       kind: str) -> SnapshotFile:
    shared = isinstance(directory, SharedDir)
    return (SharedSnapshotFile if shared else SnapshotFile)(directory, partition, offset, kind)


class _Hashing:
    """A writable file object that hashes what goes through it to a pyarrow output stream."""

    closed = False

    def __init__(self, stream) -> None:
        self.stream, self.digest, self.written = stream, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.written += memoryview(data).nbytes
        return self.stream.write(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        pass  # the stream writes out as it sees fit, and all of it on close
