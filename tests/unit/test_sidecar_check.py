"""The consistency check recounts segment memberships in SQL from the archived events, at the
snapshots' offsets, and names every profile where the stream's snapshot says otherwise."""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq

from sidecar.archive import EventArchive
from sidecar.check import check
from sidecar.store import SparseStore
from state.conditions import parse_condition
from state.definitions import DefinitionSet, Segment
from state.judging import judge_segments
from state.profile import new_profile, record_event
from state.sparse import COLUMNS, profile_rows
from state.sql import event_rows
from topology.pipeline.snapshots import SCHEMA

T0 = 1_767_225_600_000
SEGMENTS = {
    "buyers": parse_condition({"count.purchase": {"gte": 1}}),
    "browsers": parse_condition({"count.view": {"gte": 2, "within": "1d"}}),
    "browsing_buyers": parse_condition({"all": [{"segment": "buyers"},
                                                {"segment": "browsers"}]}),
}
DEFS = DefinitionSet(segments=tuple(Segment(sid, c) for sid, c in SEGMENTS.items()))


def _event(pid, n, name, t):
    return {"event_id": f"{pid}-{n}", "name": name, "time": t, "values": {"n": n},
            "request_id": None}


def _setup(tmp_path, histories, snapshot_offset):
    """Apply each profile's events as the stream does up to `snapshot_offset` (one partition,
    offsets in order), archive all of them, and load a snapshot taken at that offset."""
    store = SparseStore()
    archive = EventArchive(store.db, tmp_path / "archive")
    rows, snapshot, offset = [], [], 0
    for pid, events in histories.items():
        profile = new_profile(pid)
        for n, (name, t) in enumerate(events):
            event = _event(pid, n, name, t)
            rows += [r + (0, offset) for r in event_rows(pid, offset, event)]
            if offset < snapshot_offset:
                record_event(profile, event)
                judge_segments(profile, DEFS, t, "s", "c")
            offset += 1
        snapshot += profile_rows(profile)
    archive.add(0, 0, rows, offset)
    return store, snapshot


def _load(store, tmp_path, snapshot, offset):
    path = tmp_path / "full.parquet"
    pq.write_table(pa.table({c: [r[i] for r in snapshot] for i, c in enumerate(COLUMNS)},
                            schema=SCHEMA), path)
    store.load_manifest({"partition": 0, "offset": offset, "files": [{
        "path": str(path), "kind": "full", "offset": offset, "profiles": 0,
        "rows": len(snapshot), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]})


HISTORIES = {
    "a": [("purchase", T0), ("view", T0 + 1000), ("view", T0 + 2000)],
    "b": [("view", T0), ("view", T0 + 3 * 86_400_000)],  # the window forgot the first view
    "c": [("view", T0)],
    "d": [("view", T0), ("purchase", T0 + 5000)],  # the purchase is after the snapshot
}


def test_memberships_recounted_from_the_archive_agree_with_the_stream(tmp_path):
    store, snapshot = _setup(tmp_path, HISTORIES, snapshot_offset=7)
    _load(store, tmp_path, snapshot, 7)
    report = check(store.db, 100.0, segments=SEGMENTS)
    assert report.recounted_profiles == 4
    assert report.violations["segment_membership"] == 0 and report.ok
    segments = {r[0]: r[1] for r in store.db.execute(
        "SELECT profile_id, string_agg(key, ',' ORDER BY key) FROM journey_state "
        "WHERE key LIKE 'segment:%' GROUP BY 1").fetchall()}
    assert segments == {"a": "segment:browsers,segment:browsing_buyers,segment:buyers"}


def test_a_membership_the_events_do_not_support_is_named(tmp_path):
    store, snapshot = _setup(tmp_path, HISTORIES, snapshot_offset=7)
    snapshot = [r for r in snapshot if not (r[0] == "a" and r[3] == "segment:buyers")]
    snapshot.append(("c", None, None, "segment:buyers", None, None, None, None))
    _load(store, tmp_path, snapshot, 7)
    report = check(store.db, 100.0, segments=SEGMENTS)
    assert report.violations["segment_membership"] == 2 and not report.ok
    assert report.examples["segment_membership"] == ["a (buyers)", "c (buyers)"]


def test_merged_profiles_are_left_out_of_the_recount(tmp_path):
    store, snapshot = _setup(tmp_path, HISTORIES, snapshot_offset=7)
    snapshot = [r[:6] + ("merged",) + r[7:] if r[0] == "c" and r[3] == "profile" else r
                for r in snapshot]
    snapshot.append(("c", None, None, "segment:buyers", None, None, None, None))
    _load(store, tmp_path, snapshot, 7)
    report = check(store.db, 100.0, segments=SEGMENTS)
    assert report.recounted_profiles == 3 and report.ok


def test_a_change_by_time_alone_is_recounted_at_the_moment_it_was_judged(tmp_path):
    """A profile left `browsers` when its window passed, with no event after (a time-driven
    wake-up): the recount judges it at that moment, which its `segments_judged` row gives; at
    its last event's time it would still be in."""
    from state.time_changes import next_change

    histories = {"e": [("view", T0), ("view", T0 + 1000)]}
    store, snapshot = _setup(tmp_path, histories, snapshot_offset=2)
    assert ("e", None, None, "segment:browsers", None, None, None, None) in snapshot
    profile = new_profile("e")
    for n, (name, t) in enumerate(histories["e"]):
        record_event(profile, _event("e", n, name, t))
        judge_segments(profile, DEFS, t, "s", "c")
    due = next_change(profile, DEFS.timed_segments, T0 + 1000)
    assert due is not None
    judge_segments(profile, DEFS, due, "time", "time")
    assert profile["segments"] == [] and profile["segments_judged_at"] == due
    _load(store, tmp_path, profile_rows(profile), 2)
    assert check(store.db, 100.0, segments=SEGMENTS).ok
    without = [r for r in profile_rows(profile) if r[3] != "segments_judged"]
    store, _ = _setup(tmp_path, histories, snapshot_offset=2)
    _load(store, tmp_path, without, 2)
    report = check(store.db, 100.0, segments=SEGMENTS)
    assert report.examples["segment_membership"] == ["e (browsers)"]
