"""Snapshots: every partition's manifest lists Parquet files (a full snapshot and the deltas
since) that, loaded in order, give exactly the sparse journey state of every profile at the
partition offset the manifest names."""
from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, TopicPartition

from cjo.clock import Clock
from cjo.kafka_io import read_all
from sidecar.store import read_file
from state.sparse import profile_rows
from tests.integration.harness import send_events, stats, table, wait_processed
from tests.integration.test_journeys import JOURNEYS, START, _events
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics


def _end_offsets(settings) -> dict[int, int]:
    async def go():
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
        await consumer.start()
        try:
            topic = settings.topic("profile-inputs")
            tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
            return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()
    return asyncio.run(go())


def _manifests(settings) -> dict[int, dict]:
    reads = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("snapshots"),
                                 "snapshot_manifest"))
    return {r.value["partition"]: r.value for r in reads}


def wait_for_snapshots(settings, timeout: float = 30.0) -> dict[int, dict]:
    """Until every partition's manifest reflects everything on profile-inputs."""
    ends = _end_offsets(settings)
    deadline = time.monotonic() + timeout
    manifests = {}
    while time.monotonic() < deadline:
        manifests = _manifests(settings)
        if all(manifests.get(p, {}).get("offset") == end for p, end in ends.items() if end):
            return manifests
        time.sleep(0.5)
    raise AssertionError(f"snapshots behind: {manifests} {ends}")


def _load(manifest) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {}
    for f in manifest["files"]:
        data = read_file(f["path"])  # a local path or a URI
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        loaded = pq.read_table(pa.BufferReader(data)).to_pylist()
        assert len(loaded) == f["rows"]
        replaced = {r["profile_id"] for r in loaded if r["key"] == "profile"}
        assert len(replaced) == f["profiles"]
        for pid in replaced:  # a delta replaces everything known of these profiles
            rows[pid] = []
        for r in loaded:
            rows[r["profile_id"]].append(tuple(r.values()))
    return rows


def _run(settings, workers, tmp_path, seed: int, profiles: list[str], phases: int):
    """A worker applying `phases` rounds of journey events to `profiles`, the clock moving
    on after each; returns the worker once its snapshots reflect everything."""
    clock = Clock(str(tmp_path / "clock"))
    clock.set(START)
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, JOURNEYS.read_text()))
    worker = workers(settings, extra_env={"CJO_CLOCK_FILE": clock.path})
    rng = random.Random(seed)
    for phase in range(phases):  # deltas after the first full snapshot
        send_events(settings, _events(rng, profiles, phase, clock.now_ms()))
        wait_processed(settings, worker)
        clock.move(30 * 3_600_000)
        time.sleep(1.5)
    wait_processed(settings, worker)
    return worker


def _loaded_equal_the_stream(settings, manifests) -> dict[str, list]:
    """The manifests' files, loaded in order, hold exactly the stream's profiles' rows."""
    states = table(settings, "profiles", "profile")
    loaded = {}
    for m in manifests.values():
        loaded.update(_load(m))
    expected = {pid: sorted(profile_rows(p), key=repr) for pid, p in states.items()}
    assert {pid: sorted(rows, key=repr) for pid, rows in loaded.items()} == expected
    return expected


def test_snapshots_reflect_the_state_at_their_offsets(settings, workers, tmp_path):
    # Small chunks: full snapshots are read across many yields while inputs are applied.
    settings = settings.with_(commit_interval=0.5, snapshot_interval=1.0, snapshot_chunk=3,
                              snapshot_dir=str(tmp_path / "snapshots"))
    worker = _run(settings, workers, tmp_path, 9, [f"s{i:04d}" for i in range(150)], 3)

    manifests = wait_for_snapshots(settings)
    published = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("snapshots"),
                                     "snapshot_manifest"))
    assert any(r.value["files"][-1]["kind"] == "delta" for r in published), "no delta taken"

    expected = _loaded_equal_the_stream(settings, manifests)
    assert sum(len(r) for r in expected.values()) > 1000
    seen = stats(settings, worker)
    print("snapshots:", seen["snapshots"], "longest agent pause (ms):",
          seen["snapshot_max_pause_ms"])


def test_the_sidecar_funnel_equals_the_stream(settings, workers, tmp_path):
    """The sidecar folds the snapshot files into DuckDB (staging, set operations, atomic
    rename) and its stage sets and funnel counts equal what the stream's transitions say."""
    from collections import Counter

    from sidecar.funnels import funnel
    from sidecar.store import SparseStore
    from tests.integration.harness import outputs

    test_snapshots_reflect_the_state_at_their_offsets(settings, workers, tmp_path)
    settings = settings.with_(snapshot_dir=str(tmp_path / "snapshots"))
    store = SparseStore()
    for manifest in _manifests(settings).values():
        store.load_manifest(manifest)
        store.load_manifest(manifest)  # loading again changes nothing
    counts = {c.stage: c for c in funnel(store.db, "onboarding", 1,
                                         ["welcome", "browsing", "cart", "loyal"])}

    transitions, _, _ = outputs(settings, "journey-transitions", "journey_transition",
                                "transition_id")
    entered, milestones = Counter(), Counter()
    seen_stage = defaultdict(set)
    stage_exits, journey_exits = defaultdict(set), defaultdict(set)
    for t in transitions.values():
        if t["kind"] == "entered_stage":
            seen_stage[t["to"]].add(t["profile_id"])
        if t["kind"] == "milestone_reached":
            milestones[t["to"]] += 1
        if t["kind"] == "stage_exited":
            stage_exits[t["from"]].add(t["profile_id"])
        if t["kind"] == "journey_exited" and t["to"].startswith("exit:") and t["from"]:
            journey_exits[t["from"]].add(t["profile_id"])  # the journey's exit, from a stage
    for stage, profiles in seen_stage.items():
        entered[stage] = len(profiles)
    assert {s: c.entered for s, c in counts.items()} == dict(entered)
    assert {s: c.milestone for s, c in counts.items() if c.milestone} == dict(milestones)
    states = table(settings, "profiles", "profile")
    in_now = Counter(p["journeys"]["onboarding"]["stage"] for p in states.values()
                     if p["journeys"].get("onboarding", {}).get("status") == "active")
    assert {s: c.in_now for s, c in counts.items() if c.in_now} == dict(in_now)
    assert counts["welcome"].to_next == len(seen_stage["welcome"] & seen_stage["browsing"])
    assert {s: c.exited_stage for s, c in counts.items() if c.exited_stage} == \
        {s: len(p) for s, p in stage_exits.items()}
    assert {s: c.exited_journey for s, c in counts.items() if c.exited_journey} == \
        {s: len(p) for s, p in journey_exits.items()}
    # Who is in which step now, and the median time in each stage, as the stream has them.
    from statistics import median

    from sidecar.funnels import steps

    in_step = Counter((p["journeys"]["onboarding"]["stage"], p["journeys"]["onboarding"]["step"])
                      for p in states.values()
                      if p["journeys"].get("onboarding", {}).get("status") == "active")
    assert {(c.stage, c.step): c.profiles for c in steps(store.db, "onboarding", 1)} == \
        dict(in_step)
    cells = [p["journeys"]["onboarding"]["sparse"]["1"] for p in states.values()
             if "onboarding" in p["journeys"]]
    for stage, c in counts.items():  # each profile's latest stay, where it has ended
        stayed = [cell[f"stage:{stage}"]["last_left"] - cell[f"stage:{stage}"]["last_reached"]
                  for cell in cells if (cell.get(f"stage:{stage}") or {}).get("last_left")]
        assert c.p50_ms == (median(stayed) if stayed else None), stage

    # `cjo sidecar run --once` follows the snapshots topic and writes the same funnel.
    from dataclasses import asdict

    from sidecar.follower import follow

    result = asyncio.run(follow(settings, once=True))
    onboarding = [s for stages in result["journeys"] for s in stages
                  if s["journey"] == "onboarding" and s["version"] == 1]
    assert {s["stage"]: s for s in onboarding} == \
        {s: {**asdict(c), "conversion": c.conversion} for s, c in counts.items()}
    assert result["offsets"] == {m["partition"]: m["offset"]
                                 for m in _manifests(settings).values()}

    # The sampled consistency check finds nothing wrong in what the stream made: journey
    # invariants, and segment memberships recounted in SQL from the archived events.
    from sidecar.follower import check_report, run_check

    assert run_check(settings, 100.0) == 0
    report = check_report(settings, 100.0)
    assert report.ok and report.recounted_profiles > 100, report


def test_snapshots_on_a_uri_reach_the_sidecar(settings, workers, tmp_path):
    """CJO_SNAPSHOT_DIR as a file:// URI (shared storage): the worker writes through pyarrow's
    filesystem, the manifests name the files by URI, and the sidecar folds them into the same
    state as the stream's, which its check passes at 100%."""
    from sidecar.follower import check_report

    shared = tmp_path / "shared"
    settings = settings.with_(commit_interval=0.5, snapshot_interval=1.0, snapshot_chunk=7,
                              snapshot_dir=shared.as_uri())
    _run(settings, workers, tmp_path, 21, [f"u{i:04d}" for i in range(120)], 2)

    manifests = wait_for_snapshots(settings)
    prefix = (shared / settings.app_id).as_uri() + "/"
    paths = [f["path"] for m in manifests.values() for f in m["files"]]
    assert paths and all(p.startswith(prefix) for p in paths), paths
    published = asyncio.run(read_all(settings.bootstrap_servers, settings.topic("snapshots"),
                                     "snapshot_manifest"))
    assert any(r.value["files"][-1]["kind"] == "delta" for r in published), "no delta taken"
    assert list(shared.rglob("*.tmp")) == []
    _loaded_equal_the_stream(settings, manifests)

    report = check_report(settings, 100.0)
    assert report.ok and report.recounted_profiles > 100, report
