"""The snapshot agent writing to a directory named by a URI (shared storage): each file goes
through pyarrow's filesystem under its final name, hashed as it is written, and the manifest
names it by URI; the sidecar folds such files exactly as the files of a local directory.
Tested with file:// URIs; object stores go through the same pyarrow calls."""
from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.store import LIVE, SparseStore
from tests.unit.test_sidecar_funnels import profiles
from topology.pipeline.snapshots import (SharedDir, SharedSnapshotFile, SnapshotFile,
                                         open_snapshot_file, snapshot_dir)


def _write(directory, people: list[dict]) -> dict:
    """A full snapshot of partition 0, then a delta of some of its profiles, as manifests."""
    full = open_snapshot_file(directory, 0, 100, "full")
    full.add(people[:3])
    full.add(people[3:])
    delta = open_snapshot_file(directory, 0, 120, "delta")
    delta.add(people[1:2])
    return {"partition": 0, "offset": 120, "files": [full.close(), delta.close()]}


def _state(store) -> list[tuple]:
    return sorted(store.db.execute(f"SELECT * FROM {LIVE}").fetchall(), key=str)


def test_snapshots_written_through_a_file_uri_fold_as_those_of_a_local_directory(tmp_path):
    people = profiles()
    local_dir = snapshot_dir(str(tmp_path / "local"), "app")
    assert local_dir == tmp_path / "local" / "app"  # a plain path: as before
    shared = snapshot_dir((tmp_path / "shared").as_uri(), "app")
    assert isinstance(shared, SharedDir)

    local, remote = _write(local_dir, people), _write(shared, people)
    assert all(isinstance(f, str) and not f.startswith("file:")
               for f in (e["path"] for e in local["files"]))
    for f in remote["files"]:
        assert f["path"].startswith((tmp_path / "shared" / "app" / "p000").as_uri() + "/")
    assert [{k: v for k, v in f.items() if k != "path"} for f in remote["files"]] == \
        [{k: v for k, v in f.items() if k != "path"} for f in local["files"]]  # same bytes
    assert list((tmp_path / "shared").rglob("*.tmp")) == []

    folded = []
    for manifest in (local, remote):
        store = SparseStore()
        assert store.load_manifest(manifest) > 0
        folded.append(_state(store))
    assert folded[0] == folded[1] and len(folded[0]) > 10


def test_an_abandoned_file_is_deleted_and_named_nowhere(tmp_path):
    shared = snapshot_dir(tmp_path.as_uri(), "app")
    out = open_snapshot_file(shared, 3, 7, "full")
    assert isinstance(out, SharedSnapshotFile)
    out.add(profiles())
    out.abandon()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_two_writers_of_one_offset_never_share_a_file(tmp_path):
    shared = snapshot_dir(tmp_path.as_uri(), "app")
    first, second = (open_snapshot_file(shared, 0, 5, "full") for _ in range(2))
    second.abandon()  # e.g. the old owner, revoked: the new owner's file is untouched
    first.add(profiles())
    entry = first.close()
    assert SparseStore().load_manifest({"partition": 0, "offset": 5, "files": [entry]}) > 0


def test_uri_joins_keep_the_query_and_credentials_stay_out_of_uris():
    bucket = snapshot_dir("s3://bucket/snapshots?region=eu-west-1", "app")  # no request made
    assert bucket.child("p000").uri == "s3://bucket/snapshots/app/p000?region=eu-west-1"
    assert bucket.child("p000").path == "bucket/snapshots/app/p000"
    with pytest.raises(ValueError, match="password"):
        snapshot_dir("s3://KEY:SECRET@bucket/snapshots", "app")


def test_a_plain_path_still_writes_a_temporary_file_renamed_into_place(tmp_path):
    out = open_snapshot_file(Path(tmp_path), 0, 1, "full")
    assert type(out) is SnapshotFile and out.tmp.exists() and not out.path.exists()
    out.add(profiles())
    entry = out.close()
    assert entry["path"] == str(tmp_path / "p000" / "000000000001-full.parquet")
    assert not out.tmp.exists()
