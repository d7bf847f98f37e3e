"""The sidecar's sparse table: snapshot files fold in with set operations and replace the live
table atomically; a reader never sees a half-built table."""
from __future__ import annotations

import hashlib
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidecar.funnels import funnel
from sidecar.store import LIVE, SnapshotError, SparseStore

SCHEMA = pa.schema([("profile_id", pa.string()), ("journey", pa.string()),
                    ("version", pa.int32()), ("key", pa.string()), ("first", pa.int64()),
                    ("last_left", pa.int64()), ("value", pa.string())])


def write(path, rows) -> dict:
    cols = {f.name: [r[i] for r in rows] for i, f in enumerate(SCHEMA)}
    pq.write_table(pa.table(cols, schema=SCHEMA), path)
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": len(rows), "profiles": 0}


def profile_rows(pid: str, stages: list[str], left: bool = False) -> list[tuple]:
    rows = [(pid, None, None, "profile", None, None, None),
            (pid, "j", 1, "journey", 1, None, None)]
    for i, stage in enumerate(stages):
        last = i < len(stages) - 1 or left
        rows.append((pid, "j", 1, f"stage:{stage}", 10 + i, 20 + i if last else None, None))
    return rows


def manifest(partition, *files) -> dict:
    return {"partition": partition, "offset": files[-1]["offset"], "files": list(files)}


def test_a_delta_replaces_the_profiles_it_names_and_keeps_the_others(tmp_path):
    store = SparseStore()
    full = {**write(tmp_path / "full.parquet",
                    profile_rows("a", ["s1"]) + profile_rows("b", ["s1", "s2"])),
            "kind": "full", "offset": 10}
    store.load_manifest(manifest(0, full))
    delta = {**write(tmp_path / "delta.parquet", profile_rows("a", ["s1", "s2"])),
             "kind": "delta", "offset": 20}
    store.load_manifest(manifest(0, full, delta))
    counts = {c.stage: (c.entered, c.in_now, c.to_next) for c in funnel(store.db, "j", 1)}
    assert counts == {"s1": (2, 0, 2), "s2": (2, 2, 0)}
    assert store.loaded() == {full["path"], delta["path"]}


def test_a_profile_without_rows_in_a_delta_disappears(tmp_path):
    """A visitor merged into a member: its marker row, and no journey rows any more."""
    store = SparseStore()
    full = {**write(tmp_path / "f.parquet", profile_rows("v", ["s1"])), "kind": "full",
            "offset": 1}
    delta = {**write(tmp_path / "d.parquet", [("v", None, None, "profile", None, None, None)]),
             "kind": "delta", "offset": 2}
    store.load_manifest(manifest(0, full, delta))
    assert store.db.execute(f"SELECT count(*) FROM {LIVE}").fetchone()[0] == 0


def test_a_file_that_does_not_match_its_checksum_is_refused(tmp_path):
    store = SparseStore()
    f = {**write(tmp_path / "f.parquet", profile_rows("a", ["s1"])), "kind": "full",
         "offset": 1, "sha256": "0" * 64}
    with pytest.raises(SnapshotError, match="checksum"):
        store.load_manifest(manifest(0, f))
    assert store.db.execute(f"SELECT count(*) FROM {LIVE}").fetchone()[0] == 0


def test_a_reader_sees_the_old_table_or_the_new_one_never_a_mix(tmp_path):
    db_path = str(tmp_path / "side.duckdb")
    store = SparseStore(db_path)
    old = {**write(tmp_path / "old.parquet",
                   [r for i in range(2000) for r in profile_rows(f"p{i}", ["s1"])]),
           "kind": "full", "offset": 1}
    store.load_manifest(manifest(0, old))
    reader = store.db.cursor()  # another connection to the same database
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(reader.execute(
                f"SELECT count(*), count(*) FILTER (WHERE key = 'stage:s2') FROM {LIVE}"
            ).fetchone())

    thread = threading.Thread(target=read)
    thread.start()
    files = [old]
    for n in range(5):  # every delta moves all profiles a stage on
        stages = ["s1", "s2"] + [f"x{k}" for k in range(n)]
        rows = [r for i in range(2000) for r in profile_rows(f"p{i}", stages)]
        files.append({**write(tmp_path / f"d{n}.parquet", rows), "kind": "delta",
                      "offset": n + 2})
        store.load_manifest(manifest(0, *files))
    stop.set()
    thread.join()
    valid = {(2000 * (2 + n), 0 if n == 0 else 2000) for n in range(7)}
    assert seen and seen <= valid, seen - valid


def test_the_consistency_check_finds_planted_violations_and_names_them(tmp_path):
    from sidecar.check import check

    store = SparseStore()
    good = [r for i in range(200) for r in profile_rows(f"p{i}", ["s1", "s2"])]
    bad = [("x1", "j", 1, "stage:s1", 0, None, None)]                    # before the journey
    bad += [("x2", "j", 1, "exit:s1:0", 50, None, None)]                 # exit, never entered
    bad += [("x3", "j", 1, "journey", 1, None, None),
            ("x3", "j", 1, "stage:s1", 10, None, None),
            ("x3", "j", 1, "stage:s2", 11, None, None)]                  # two stages open
    bad += [("x4", "j", 1, "journey", 1, None, None), ("x4", "j", 1, "goal", 5, None, None),
            ("x4", "j", 1, "position", 1, 5, "left"),
            ("x4", "j", 1, "stage:s2", 9, None, None)]                   # stage after the goal
    # Not a violation: a second run (re-entry `always`, from 8 on) reaches a new stage.
    good += [("y1", "j", 1, "journey", 1, 5, None), ("y1", "j", 1, "goal", 5, None, None),
             ("y1", "j", 1, "position", 8, None, "s2/w"),
             ("y1", "j", 1, "stage:s2", 9, None, None)]
    bad += [("x5", "j", 1, "journey", 5, 4, None)]                       # left before reached
    markers = [(p, None, None, "profile", None, None, None)
               for p in ("x1", "x2", "x3", "x4", "x5", "y1")]
    f = {**write(tmp_path / "f.parquet", good + bad + markers), "kind": "full", "offset": 1}
    store.load_manifest(manifest(0, f))

    clean = check(store.db, percent=100)
    assert clean.sampled_profiles == 206
    assert clean.violations == {"stage_before_journey": 1, "stage_after_goal": 1,
                                "exit_without_entry": 1, "exit_from_unentered_stage": 1,
                                "two_stages_at_once": 1, "left_before_reached": 1}
    assert clean.examples["two_stages_at_once"] == ["x3"] and not clean.ok
    sampled = check(store.db, percent=50, seed=7)
    assert 0 < sampled.sampled_profiles < 206


def test_the_consistency_check_passes_on_valid_state(tmp_path):
    from sidecar.check import check

    store = SparseStore()
    rows = [r for i in range(50) for r in profile_rows(f"p{i}", ["s1", "s2", "s3"])]
    store.load_manifest(manifest(0, {**write(tmp_path / "f.parquet", rows), "kind": "full",
                                     "offset": 1}))
    report = check(store.db, percent=100)
    assert report.ok and report.sampled_profiles == 50
