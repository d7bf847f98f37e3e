"""Snapshot files named by a URI (the snapshot directory on shared storage): the sidecar reads
them through pyarrow's filesystems, checks their SHA-256 and folds them exactly as local
files. Tested with file:// URIs; object stores (s3://, gs://, abfs://, hdfs://) go through the
same pyarrow call."""
from __future__ import annotations

import pytest

from sidecar.store import LIVE, SnapshotError, SparseStore
from tests.unit.test_sidecar_store import manifest, profile_rows, write


def _files(tmp_path):
    full = {**write(tmp_path / "full.parquet", [r for i in range(6) for r in profile_rows(
        f"p{i}", ["s1", "s2"] if i % 2 else ["s1"])]), "kind": "full", "offset": 10}
    delta = {**write(tmp_path / "delta.parquet", profile_rows("p0", ["s1", "s2"], left=True)),
             "kind": "delta", "offset": 12}
    return full, delta


def _state(store) -> list[tuple]:
    return sorted(store.db.execute(f"SELECT * FROM {LIVE}").fetchall(), key=str)


def test_files_named_by_uri_fold_as_local_files(tmp_path):
    full, delta = _files(tmp_path)
    local = SparseStore()
    local.load_manifest(manifest(0, full, delta))
    remote = SparseStore()
    as_uri = [{**f, "path": (tmp_path / f["path"].rsplit("/", 1)[1]).as_uri()}
              for f in (full, delta)]
    assert as_uri[0]["path"].startswith("file:///")
    assert remote.load_manifest(manifest(0, *as_uri)) > 0
    assert _state(remote) == _state(local) and len(_state(local)) > 10
    assert remote.loaded() == {f["path"] for f in as_uri}


def test_a_uri_file_that_does_not_match_its_checksum_is_refused(tmp_path):
    full, _ = _files(tmp_path)
    bad = {**full, "path": (tmp_path / "full.parquet").as_uri(), "sha256": "0" * 64}
    with pytest.raises(SnapshotError, match="checksum"):
        SparseStore().load_manifest(manifest(0, bad))
