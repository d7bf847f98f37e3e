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
            rows += [r + (0, offset, 0, offset) for r in event_rows(pid, offset, event)]
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


def test_an_event_forwarded_twice_is_recounted_once_as_the_stream_applied_it(tmp_path):
    """The identity step forwarded the same events-topic input twice (it read it again after a
    crash or a rebalance before its commit): profile-inputs and so the archive hold it at two
    offsets, with one source; the profile applied the first copy and skipped the second
    (`positions`). `browsers` left by time alone: at the wake-up one view is within the day,
    and the recount then must not count its copy (the scale fault scenario's `active_today`).
    A producer's re-send is another input (another source): when the stream applied it again
    (its id forgotten, `limited.event_ids`, no caveat), the recount counts it too."""
    from state.time_changes import next_change

    store = SparseStore()
    archive = EventArchive(store.db, tmp_path / "archive")
    rows, snapshot = [], []
    # (profile, event number, name, time, source offset) in profile-inputs order; f's second
    # view is forwarded again at offset 3 (same source 11); g's view re-sent (source 21).
    inputs = [("f", 0, "view", T0, 10), ("f", 1, "view", T0 + 20 * 3_600_000, 11),
              ("g", 0, "view", T0, 20), ("f", 1, "view", T0 + 20 * 3_600_000, 11),
              ("g", 0, "view", T0, 21)]
    for offset, (pid, n, name, t, source) in enumerate(inputs):
        event = _event(pid, n, name, t)
        rows += [r + (0, offset, 0, source) for r in event_rows(pid, offset, event)]
    archive.add(0, 0, rows, len(inputs))
    f, g = new_profile("f"), new_profile("g")
    for n, t in ((0, T0), (1, T0 + 20 * 3_600_000)):  # each of f's inputs applied once
        record_event(f, _event("f", n, "view", t))
        judge_segments(f, DEFS, t, "s", "c")
    assert f["segments"] == ["browsers"]
    due = next_change(f, DEFS.timed_segments, T0 + 20 * 3_600_000)
    assert T0 + 86_400_000 < due < T0 + 44 * 3_600_000  # the first view has left the window
    judge_segments(f, DEFS, due, "time", "time")
    assert f["segments"] == []
    for _ in range(2):  # both of g's inputs applied
        record_event(g, _event("g", 0, "view", T0))
        judge_segments(g, DEFS, T0, "s", "c")
    assert g["segments"] == ["browsers"]
    snapshot = profile_rows(f) + profile_rows(g)
    _load(store, tmp_path, snapshot, len(inputs))
    report = check(store.db, 100.0, segments=SEGMENTS)
    assert report.recounted_profiles == 2
    assert report.examples["segment_membership"] == [] and report.ok
