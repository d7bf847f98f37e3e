"""The funnel columns (docs/sidecar.md, "Funnel columns"), each pinned to its definition: the
profiles are moved by the real journey machine, written by the snapshot agent's own file
writer, folded by the sidecar's store, and counted by sidecar.funnels."""
from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidecar.check import check
from sidecar.follower import print_funnels
from sidecar.funnels import funnel, stage_sets, version_rows
from sidecar.store import LIVE, SparseStore
from state.durations import DAY, HOUR, MINUTE
from state.profile import new_profile
from state.sparse import COLUMNS
from tests.unit.test_journey_machine import T0, event, idle, journey, seg, send, stage
from tests.unit.test_sidecar_store import manifest, write
from topology.ops import funnel_page
from topology.pipeline.snapshots import SCHEMA, SnapshotFile

ORDER = ["s1", "s2", "s3"]
J = journey(stage("s1", idle("i1"), milestone=seg("m1"), exits=(seg("e1"),)),
            stage("s2", idle("i2"), milestone=seg("m2")),
            stage("s3", idle("i3")),
            reentry="always", goal=seg("g"), exits=(seg("x"),))


def _moved(pid: str, inputs: list[tuple[int, str, set]]) -> dict:
    """A profile after its events (time, name, segments it is in), through the journey machine."""
    profile = new_profile(pid)
    for t, name, segments in inputs:
        send(profile, [J], event(name, t), segments=segments)
    return profile


def profiles() -> list[dict]:
    return [
        # a: two runs. Run 1: s1 for a day, s2 for a day, the goal. Run 2 (ten days later):
        # s1 for 2 h, then s2, where it is now.
        _moved("a", [(T0, "start", set()), (T0 + DAY, "view", {"m1"}),
                     (T0 + 2 * DAY, "view", {"g"}),
                     (T0 + 10 * DAY, "start", set()), (T0 + 10 * DAY + 2 * HOUR, "view", {"m1"})]),
        # b: leaves through s1's own exit after 3 h; enters again and is in s1 now.
        _moved("b", [(T0, "start", set()), (T0 + 3 * HOUR, "view", {"e1"}),
                     (T0 + 4 * HOUR, "start", set())]),
        # c: s1 for 1 h, then s2, left through the journey's exit 4 h later.
        _moved("c", [(T0, "start", set()), (T0 + HOUR, "view", {"m1"}),
                     (T0 + 5 * HOUR, "view", {"x"})]),
        # d: in s1 now.
        _moved("d", [(T0, "start", set())]),
        # f: left through the journey's exit from s1 after 30 minutes.
        _moved("f", [(T0, "start", set()), (T0 + 30 * MINUTE, "view", {"x"})]),
    ]


def _store(tmp_path, people: list[dict]) -> SparseStore:
    """The snapshot agent's file of these profiles, loaded by the sidecar."""
    out = SnapshotFile(tmp_path, 0, 100, "full")
    out.add(people)
    store = SparseStore()
    store.load_manifest({"partition": 0, "offset": 100, "files": [out.close()]})
    return store


def _members(db, stage: str, following: str | None) -> dict[str, set[str]]:
    with version_rows(db, "j", 1):
        return {name: {r[0] for r in db.execute(sql).fetchall()}
                for name, sql in stage_sets(stage, following).items()}


def test_each_funnel_column_counts_its_set_exactly(tmp_path):
    store = _store(tmp_path, profiles())
    assert _members(store.db, "s1", "s2") == {
        "entered": {"a", "b", "c", "d", "f"},
        "in_now": {"b", "d"},            # b re-entered it: its earlier stay ended, this one not
        "milestone": {"a", "c"},         # a reached it in both runs: one profile
        "exited_stage": {"b"},           # s1's own exit criteria
        "exited_journey": {"f"},         # the journey's exit criteria, while in s1
        "to_next": {"a", "c"},
        "goal": {"a"},                   # entered s1, reached the goal (from s2)
    }
    assert _members(store.db, "s2", None) == {
        "entered": {"a", "c"}, "in_now": {"a"}, "milestone": set(), "exited_stage": set(),
        "exited_journey": {"c"}, "to_next": set(), "goal": {"a"}}

    s1, s2 = funnel(store.db, "j", 1, ORDER)  # s3: nobody entered it
    assert (s1.entered, s1.in_now, s1.milestone, s1.exited_stage, s1.exited_journey,
            s1.to_next, s1.goal) == (5, 2, 2, 1, 1, 2, 1)
    assert (s2.entered, s2.in_now, s2.milestone, s2.exited_stage, s2.exited_journey,
            s2.to_next, s2.goal) == (2, 1, 0, 0, 1, 0, 1)
    assert s1.exited == s1.exited_stage and s1.conversion == 2 / 5


def test_time_in_stage_is_each_profiles_latest_stay_not_first_reached_to_last_left(tmp_path):
    store = _store(tmp_path, profiles())
    s1, s2 = funnel(store.db, "j", 1, ORDER)
    # s1's ended latest stays: a 2 h (run 2; first reached to last left would be 10 days 2 h),
    # c 1 h, f 30 min; b and d are in it now (b's 3 h of run 1 is not its latest stay).
    assert s1.p50_ms == HOUR
    assert s1.p90_ms == pytest.approx(HOUR + 0.8 * HOUR)  # interpolated: 1 h + 0.8 * (2 h - 1 h)
    # s2: c's 4 h; a's latest stay (run 2) has not ended, so its 1 day of run 1 is not counted.
    assert s2.p50_ms == s2.p90_ms == 4 * HOUR


def test_the_stream_state_behind_the_funnel_passes_the_consistency_check(tmp_path):
    store = _store(tmp_path, profiles())
    report = check(store.db, 100.0)
    assert report.ok and report.sampled_profiles == 5, report


def test_the_check_names_a_stay_left_before_it_began_and_an_exit_from_an_unentered_stage(tmp_path):
    def row(pid, key, first, last_left=None, last_reached=None):
        return (pid, "j", 1, key, first, last_left, None, last_reached)

    rows = [(p, None, None, "profile", 1, None, None, None) for p in ("x1", "x2", "x3", "x4")]
    rows += [row(p, "journey", 1, last_reached=1) for p in ("x1", "x2", "x3", "x4")]
    rows += [row("x1", "stage:s1", 10, last_left=15, last_reached=20)]   # left before entered
    rows += [row("x2", "stage:s1", 10, last_reached=5)]                  # latest before first
    rows += [row("x3", "stage:s1", 10, 12, 10), row("x3", "exit:journey:0", 30, None, 30),
             row("x3", "exit:journey:0@s2", 30, None, 30)]               # never in s2
    rows += [row("x4", "stage:s1", 10, 12, 10), row("x4", "exit:s2:0", 12, None, 12)]
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)},
                            schema=SCHEMA), path)
    store = SparseStore()
    store.load_manifest(manifest(0, {**_entry(path), "kind": "full", "offset": 1}))
    report = check(store.db, 100.0)
    assert report.examples["left_before_reached"] == ["x1", "x2"]
    assert report.examples["exit_from_unentered_stage"] == ["x3", "x4"]
    assert not report.ok


def _entry(path) -> dict:
    import hashlib
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": 0, "profiles": 0}


def test_files_and_databases_from_before_last_reached_still_load(tmp_path):
    """Snapshot files without the column fold in (it reads as null, and a stay then counts from
    `first`); a database without it gains it when the store opens it, and a read-only reader
    of one that never did still computes the funnel."""
    old = [("p", None, None, "profile", None, None, None),
           ("p", "j", 1, "journey", 1, None, None),
           ("p", "j", 1, "stage:s1", 10, 70, None), ("p", "j", 1, "stage:s2", 70, None, None)]
    path = tmp_path / "db.duckdb"
    legacy = duckdb.connect(str(path))
    legacy.execute(f"CREATE TABLE {LIVE} (profile_id VARCHAR, journey VARCHAR, version INTEGER, "
                   "key VARCHAR, \"first\" BIGINT, last_left BIGINT, value VARCHAR)")
    legacy.execute(f"INSERT INTO {LIVE} VALUES ('q', 'j', 1, 'journey', 5, 25, NULL), "
                   "('q', 'j', 1, 'stage:s1', 5, 25, NULL)")
    legacy.close()
    reader = duckdb.connect(str(path), read_only=True)
    assert [(c.stage, c.entered, c.p50_ms) for c in funnel(reader, "j", 1)] == [("s1", 1, 20)]
    reader.close()

    store = SparseStore(str(path))
    assert store.db.execute(f"SELECT DISTINCT last_reached FROM {LIVE}").fetchall() == [(None,)]
    store.load_manifest(manifest(0, {**write(tmp_path / "old.parquet", old), "kind": "full",
                                     "offset": 1}))
    counts = {c.stage: (c.entered, c.in_now, c.p50_ms) for c in funnel(store.db, "j", 1)}
    assert counts == {"s1": (2, 0, pytest.approx(40)), "s2": (1, 1, None)}  # stays 20 and 60
    assert check(store.db, 100.0).ok


def test_the_printed_table_and_the_funnel_page_show_both_exits(tmp_path, capsys):
    from dataclasses import asdict

    store = _store(tmp_path, profiles())
    stages = [{**asdict(c), "conversion": c.conversion} for c in funnel(store.db, "j", 1, ORDER)]
    print_funnels({"journeys": [stages], "steps": [[]]})
    out = capsys.readouterr().out.splitlines()
    assert "exit st." in out[1] and "exit jn." in out[1]
    assert out[2].split()[:8] == ["s1", "5", "2", "2", "1", "1", "2", "40%"]
    page = funnel_page.render("j", 1, stages, None, {"s1": 2, "s2": 1, "s3": 0}, True)
    assert "1 stage exit" in page and "1 journey exit" in page
    # A funnels file from before the split (`exited` only) still renders.
    older = [{k: v for k, v in s.items() if k not in ("exited_stage", "exited_journey")}
             for s in stages]
    assert "1 stage exit" in funnel_page.render("j", 1, older, None, {"s1": 2}, True)
