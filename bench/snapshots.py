"""Benchmark of the snapshot agent's full snapshot (topology/pipeline/snapshots.py) on one
partition of N profiles: how long it takes, and how long it keeps the profile agent from running.

For each N it writes N realistic profiles (the profile codec of topology/machinery/wire.py,
the bytes Faust's store holds: counts, windows, latest values and aggregates folded by
state.profile.record_event, segments, deliveries, positions, and 1-3 journeys with their sparse
cells: journey, 2-4 stages, steps, branches, milestones, sometimes a goal or an exit) into a real
RocksDB database, opened with Faust's own `RocksDBOptions` (rocksdict, raw mode, Faust's
defaults), in batches, with Faust's offset key beside them. Then, in a fresh process per run (so
that the peak RSS is that run's alone), it calls the real code:

  full   `await Snapshotter._write(partition, "full")`, while a concurrent asyncio task stands for the
         profile agent: it loops on `await asyncio.sleep(0)` and records the longest wall time
         between two of its iterations (the longest the snapshot kept it from running) and how
         many iterations it got;
  delta  after rewriting 1% of the profiles (record_event of one more view, one more sparse
         cell) and calling `Snapshotter.touched` for each, `Snapshotter._write(partition,
         "delta", keys)`, with the same stand-in agent. The rewritten profiles are put back
         afterwards, so every run (and a rerun with --dir) reads the same database.

It prints per run: profiles, rows written, Parquet MB and row groups, the full snapshot's wall
time and profiles/s, the agent's longest gap and iteration count, the Snapshotter's own
`snapshot_max_pause_ms` stat, the time of the final `SnapshotFile.close` (Parquet footer and
SHA-256 of the whole file, after the last pause the Snapshotter measures), the delta's time and
its `snapshot_last_pause_ms`, the RSS before the snapshot and the process's peak RSS after the
full snapshot and after the delta (VmHWM: the process opened the database itself). For
the largest N it also runs the full snapshot with other chunk sizes (`--sweep`), to show the
trade-off between the pause and the total time.

What is real and what stands in: the Snapshotter, SnapshotFile, state.sparse, the profile codec
(WorkerWire), Settings, Faust's RocksDB options and rocksdict are the production code. The
`topology` (settings, wire, stats counters, an app whose rebalancing/recovery flags satisfy
`stores_settled` and whose assignor reports the partition as owned, so that `_owned()` runs as
is) and the `profiles` table (`.data._db_for_partition(p)` returns the rocksdict database,
`.get(pid)` reads and decodes from it, as Faust's Table does) are minimal stand-ins: this is a
benchmark of the snapshot code, not a test of the topology; no broker, no Faust worker. (A
real Table.get called from the snapshot timer, outside any event, also looks the key up through
Faust's key index or every open partition database; the stand-in reads the one database.)

On 2 CPUs the default run takes 12-15 minutes: about 2 minutes to write 1,000,000 profiles
(encoded by one process per CPU) and 3-4 minutes per full snapshot of them.

Run from the repository root (prints figures; it is not a test):

    python -m bench.snapshots                              # 100,000 and 1,000,000 profiles
    python -m bench.snapshots --profiles 100000 --chunk 1000 --sweep
    python -m bench.snapshots --profiles 1000000 --sweep 250 4000 --dir /tmp/snap-bench
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

PARTITION = 3
APP_ID = "bench"
NOW = 1_717_200_000_000  # ms; the population's "now"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
BATCH = 10_000  # profiles per WriteBatch
FAUST_OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps the offset

# -- the synthetic population ------------------------------------------------------------------
# Journeys in the shape of examples/definitions.yaml: stages (id, steps, the branches of its
# decision / A/B steps, whether it has a milestone).
JOURNEYS = {
    "onboarding": [
        ("welcome", ["hello", "wait_visit", "nudge", "check", "offer", "join", "wait_offer"],
         {"check": ["active", "else"], "offer": ["coupon", "content"]}, False),
        ("browsing", ["picks", "browse_wait", "browse_end"], {}, True),
        ("cart", ["cart_wait", "cart_remind", "cart_hold", "cart_end"], {}, True),
        ("loyal", ["thanks", "loyal_wait", "loyal_end"], {}, False),
    ],
    "winback": [
        ("lapsed", ["mail_1", "wait_week", "check_return", "mail_2"],
         {"check_return": ["returned", "else"]}, False),
        ("returning", ["welcome_back", "wait_buy", "offer_split"],
         {"offer_split": ["ten_off", "free_ship"]}, True),
        ("won", ["thanks", "won_end"], {}, False),
    ],
    "vip": [
        ("qualify", ["check_spend", "tier_mail"], {"check_spend": ["gold", "silver"]}, False),
        ("perks", ["perk_mail", "wait_month", "perk_push"], {}, True),
        ("renewal", ["renew_mail", "wait_renew", "renew_end"], {}, False),
        ("lapsed", ["sorry_mail", "lapsed_end"], {}, False),
    ],
}
SEGMENTS = ["tokyo", "buyers", "repeat_buyers", "big_spenders", "premium", "active_today",
            "cart_abandoners", "tokyo_buyers", "members"]
DELIVERIES = ["search_banner", "cart_reminder", "welcome_member"]
PATHS = ["/", "/search", "/cart", "/item/1001", "/item/2002", "/item/3003", "/sale", "/account"]


def profile_id(i: int) -> str:
    """Members (7 in 10) and visitors; deterministic, so a run can find the i-th profile."""
    if i % 10 < 7:
        return f"member-{i:08d}"
    return f"visitor-{(i * 2654435761) % (1 << 32):08x}{i:06x}"


def _template(rng: random.Random) -> dict:
    """User data of one synthetic visitor/member, folded by the real state.profile.record_event
    from the events of its last 1-30 days: 1-8 events for half of them, 8-30 for a third, 30-80
    for the rest (about 20 on average)."""
    from state.profile import METADATA, new_profile, record_event

    profile = new_profile("template")
    start = NOW - rng.randint(1, 30) * DAY
    t = start
    low, high = rng.choices([(1, 8), (8, 30), (30, 80)], weights=[50, 35, 15])[0]
    for _ in range(rng.randint(low, high)):
        t += rng.randint(10_000, 12 * HOUR)
        r = rng.random()
        if r < 0.65:
            event = {"name": "view", "values": {"path": rng.choice(PATHS),
                                                "pref_cd": rng.randint(1, 47)}}
        elif r < 0.8:
            event = {"name": "add_to_cart", "values": {"item": f"sku-{rng.randint(1, 5000)}",
                                                       "price": float(rng.randint(5, 300) * 100)}}
        elif r < 0.88:
            event = {"name": "purchase", "values": {"amount": float(rng.randint(10, 900) * 100),
                                                    "items": rng.randint(1, 5)}}
        elif r < 0.93:
            event = {"name": "identify", "values": {"plan": rng.choice(["free", "premium"])}}
        else:
            event = {"name": METADATA, "values": {"ua": "Mozilla/5.0", "lang": "ja"}}
        event.update(time=min(t, NOW), request_id=f"req-{rng.getrandbits(48):012x}")
        record_event(profile, event)
    return profile


def _journey(rng: random.Random, jid: str, t0: int, new_state) -> dict:
    """A journey state as state.journey_machine leaves it: 2-4 stages walked, the cells of the
    stages, steps, branches, milestones; still in it (7 in 10), else left by goal or an exit."""
    stages = JOURNEYS[jid]
    state = new_state()
    version = rng.choice((1, 1, 2, 3))
    cells: dict = {}
    taken: dict = {}
    t = t0
    state.update(version=version, runs=1, entered_at=t0)
    cells["journey"] = {"first": t0, "last_left": None}
    reached = rng.randint(2, min(4, len(stages)))
    seq = 0
    stage = step = None
    for i, (sid, steps, branches, milestone) in enumerate(stages[:reached]):
        stage = sid
        cells[f"stage:{sid}"] = {"first": t, "last_left": None}
        walked = steps if i < reached - 1 else steps[:rng.randint(1, len(steps))]
        for s in walked:
            if step is not None:
                cells[f"step:{step}"]["last_left"] = t
            step = s
            seq += 1
            cells[f"step:{s}"] = {"first": t, "last_left": None}
            if s in branches:
                taken[s] = rng.choice(branches[s])
            t += rng.randint(MINUTE, 2 * DAY)
        if milestone and rng.random() < 0.5:
            cells[f"milestone:{sid}"] = {"first": t - MINUTE, "last_left": None}
        if i < reached - 1:
            cells[f"stage:{sid}"]["last_left"] = t
    r = rng.random()
    if r < 0.7:
        state.update(status="active", stage=stage, step=step, seq=seq,
                     due=t + DAY if "wait" in step else None)
    else:
        if r < 0.85:
            cells["goal"] = {"first": t, "last_left": None}
            state["goal_reached"] = True
        else:
            cells[f"exit:{stage}:0"] = {"first": t, "last_left": None}
        for key in (f"step:{step}", f"stage:{stage}", "journey"):
            cells[key]["last_left"] = t
        state.update(status="left", seq=seq, left_at=t)
    state["sparse"] = {str(version): cells}
    state["branches"] = {str(version): taken} if taken else {}
    return state


def make_profile(i: int, rng: random.Random, templates: list[dict]) -> dict:
    from state.journey_machine import new_state
    from state.profile import new_profile

    profile = new_profile(profile_id(i))
    base = rng.choice(templates)
    for key in ("first_seen", "last_seen", "counts", "hourly", "daily", "last_time", "last",
                "aggregates", "request"):
        profile[key] = base[key]  # shared with other profiles: only encoded, never changed
    profile["segments"] = rng.sample(SEGMENTS, rng.randint(1, 4))
    profile["deliveries"] = {
        d: {"total": rng.randint(1, 3), "day": NOW // DAY - rng.randint(0, 20), "day_count": 1}
        for d in rng.sample(DELIVERIES, rng.randint(0, 2))}
    profile["positions"] = {str(rng.randint(0, 7)): rng.randint(0, 10_000_000)
                            for _ in range(rng.randint(1, 2))}
    if i % 10 < 7 and rng.random() < 0.3:
        profile["merges_done"] = [f"merge-{rng.getrandbits(64):016x}"]
    t0 = profile["first_seen"] or NOW - DAY
    profile["journeys"] = {jid: _journey(rng, jid, t0 + rng.randint(0, HOUR), new_state)
                           for jid in rng.sample(sorted(JOURNEYS), rng.choice((1, 1, 2, 3)))}
    return profile


def _settings(workdir: Path, chunk: int = 1000):
    from cjo.settings import Settings

    return Settings(app_id=APP_ID, data_dir=workdir, snapshot_chunk=chunk,
                    snapshot_dir=str(workdir / "snapshots"))


def _open_db(path: Path):
    """The partition's database exactly as Faust's RocksDB store opens it (rocksdict)."""
    from faust.stores.rocksdb import RocksDBOptions

    options = RocksDBOptions()
    if not options.use_rocksdict:
        raise SystemExit("rocksdict is not installed: Faust would not use it either")
    return options.open(path)


def _rss_kib(field: str = "VmRSS") -> int:
    """The process's resident set now (VmRSS) or at its peak so far (VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


_WORKER: tuple | None = None  # a generating process's templates and encoder


def _encoded(start: int, stop: int, seed: int, workdir: str) -> list[tuple[bytes, bytes]]:
    """Keys and encoded values of profiles start..stop-1 (in a generating process)."""
    global _WORKER
    if _WORKER is None:
        from topology.machinery.wire import WorkerWire

        rng = random.Random(seed)
        _WORKER = ([_template(rng) for _ in range(500)],
                   WorkerWire(_settings(Path(workdir))).encode_profile)
    templates, encode = _WORKER
    rng = random.Random(seed * 1_000_003 + start)
    return [(profile_id(i).encode(), encode(make_profile(i, rng, templates)))
            for i in range(start, stop)]


def generate(db_path: Path, workdir: Path, n: int, seed: int) -> dict:
    """Write n profiles into a fresh partition database, a WriteBatch per BATCH profiles,
    encoded by one process per CPU."""
    import rocksdict

    started = time.perf_counter()
    db = _open_db(db_path)
    size = 0
    todo = deque((a, min(a + BATCH, n)) for a in range(0, n, BATCH))
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque = deque()  # in order, at most two batches per process ahead
        while todo or pending:
            while todo and len(pending) < 2 * workers:
                pending.append(pool.submit(_encoded, *todo.popleft(), seed, str(workdir)))
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in pending.popleft().result():
                size += len(value)
                batch.put(key, value)
            db.write(batch)
    batch = rocksdict.WriteBatch(raw_mode=True)
    batch.put(FAUST_OFFSET_KEY, str(n - 1).encode())  # as Faust's set_persisted_offset
    db.write(batch)
    written = time.perf_counter() - started
    db.flush()
    db.compact_range(None, None)  # a settled store, as a long-running worker's mostly is
    db.close()
    on_disk = sum(f.stat().st_size for f in db_path.rglob("*") if f.is_file())
    return {"n": n, "write_s": written, "total_s": time.perf_counter() - started,
            "value_bytes": size, "disk_bytes": on_disk}


# -- the measured run --------------------------------------------------------------------------

class _Profiles:
    """Stands in for Faust's profiles Table: its RocksDB store per partition, and get()."""

    def __init__(self, db, partition: int, decode) -> None:
        def db_for_partition(p: int):
            assert p == partition, p
            return db

        self.data = SimpleNamespace(_db_for_partition=db_for_partition)
        self._db, self._decode = db, decode

    def get(self, pid: str):
        value = self._db.get(pid.encode())  # Faust: raw key serializer, then the codec
        return None if value is None else self._decode(value)


def _topology(settings, wire, partition: int):
    """Stands in for topology.app.Topology: what Snapshotter._write/_owned touch."""
    name = settings.topic("profile-inputs")
    from faust.types import TP

    from topology.machinery.sending import Outgoing

    app = SimpleNamespace(
        rebalancing=False,  # stores_settled: no rebalance...
        tables=SimpleNamespace(recovery=SimpleNamespace(
            completed=SimpleNamespace(is_set=lambda: True))),  # ...and recovery completed
        assignor=SimpleNamespace(assigned_actives=lambda: {TP(name, partition)}))
    async def submit(outgoing) -> None:  # no agent here: nothing cached to write first
        return None

    return SimpleNamespace(settings=settings, wire=wire, app=app,
                           topics={"profile-inputs": SimpleNamespace(get_topic_name=lambda: name)},
                           stats=SimpleNamespace(counters=Counter()),
                           write_tables=Outgoing, sender=SimpleNamespace(submit=submit))


async def _with_agent(write) -> dict:
    gaps: list[float] = []
    stop = False

    async def agent() -> None:  # the profile agent: runs whenever the loop lets it
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(agent())
    await asyncio.sleep(0)  # the agent is running before the snapshot starts
    cpu, started = time.process_time(), time.perf_counter()
    entry = await write()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    stop = True
    await task
    return {"entry": entry, "wall_s": wall, "cpu_s": cpu, "gaps": gaps}


def measure(db_path: str, workdir: str, n: int, chunk: int, delta_percent: float,
            seed: int) -> dict:
    """One run in a fresh process: the full snapshot with the agent beside it, then a delta."""
    import pyarrow.parquet as pq
    import rocksdict

    from state.profile import record_event
    from topology.machinery.wire import WorkerWire
    from topology.pipeline import snapshots

    settings = _settings(Path(workdir) / f"run-{chunk}", chunk)
    wire = WorkerWire(settings)
    db = _open_db(Path(db_path))
    profiles = _Profiles(db, PARTITION, wire.decode_profile)
    snapshotter = snapshots.Snapshotter(_topology(settings, wire, PARTITION), profiles)
    counters = snapshotter.topology.stats.counters
    offset = n  # the next input of the partition
    snapshotter.touched(PARTITION, offset - 1, profile_id(n - 1))

    # Instrumentation only: how long the final close (footer + SHA-256) takes; it runs after
    # the last pause the Snapshotter measures and before it returns.
    closes: list[float] = []
    close = snapshots.SnapshotFile.close

    def timed_close(self):
        t = time.perf_counter()
        try:
            return close(self)
        finally:
            closes.append(time.perf_counter() - t)

    snapshots.SnapshotFile.close = timed_close

    rss_before = _rss_kib()
    full = asyncio.run(_with_agent(lambda: snapshotter._write(PARTITION, "full")))
    entry, gaps = full["entry"], full["gaps"]
    out = {"n": n, "chunk": chunk, "profiles": entry["profiles"], "rows": entry["rows"],
           "parquet_bytes": os.path.getsize(entry["path"]),
           "row_groups": pq.ParquetFile(entry["path"]).metadata.num_row_groups,
           "full_s": full["wall_s"], "full_cpu_s": full["cpu_s"],
           "agent_max_gap_ms": max(gaps) * 1000, "agent_iterations": len(gaps),
           "agent_median_gap_ms": statistics.median(gaps) * 1000,
           "max_pause_stat_ms": counters["snapshot_max_pause_ms"],
           "full_s_stat": counters["snapshot_full_s"], "full_close_ms": closes[-1] * 1000,
           "rss_before": rss_before * 1024, "peak_rss_full": _rss_kib("VmHWM") * 1024}
    os.unlink(entry["path"])  # the next run's disk and page cache start alike

    # The delta: delta_percent of the profiles changed by the agent since the full snapshot.
    rng = random.Random(seed + chunk)
    chosen = sorted(rng.sample(range(n), max(1, int(n * delta_percent / 100))))
    batch = rocksdict.WriteBatch(raw_mode=True)
    originals = rocksdict.WriteBatch(raw_mode=True)  # put back afterwards: runs stay alike
    for i in chosen:
        pid = profile_id(i)
        originals.put(pid.encode(), db.get(pid.encode()))
        profile = profiles.get(pid)
        t = (profile["last_seen"] or NOW) + MINUTE
        record_event(profile, {"name": "view", "time": t, "request_id": "bench",
                               "values": {"path": "/sale", "pref_cd": 13}})
        for state in profile["journeys"].values():
            state["sparse"][str(state["version"])].setdefault(
                "step:bench_extra", {"first": t, "last_left": None})
        batch.put(pid.encode(), wire.encode_profile(profile))
    db.write(batch)
    for k, i in enumerate(chosen):
        snapshotter.touched(PARTITION, offset + k, profile_id(i))
    counters["snapshot_max_pause_ms"] = 0
    keys = [pid.encode() for pid in sorted(snapshotter.dirty[PARTITION])]
    run = asyncio.run(_with_agent(lambda: snapshotter._write(PARTITION, "delta", keys)))
    delta = run["entry"]
    out.update(delta_profiles=delta["profiles"], delta_rows=delta["rows"],
               delta_bytes=os.path.getsize(delta["path"]),
               delta_ms=run["wall_s"] * 1000,
               delta_agent_max_gap_ms=max(run["gaps"], default=0) * 1000,
               delta_pause_stat_ms=counters["snapshot_last_pause_ms"],
               delta_close_ms=closes[-1] * 1000,
               peak_rss=_rss_kib("VmHWM") * 1024)
    snapshots.SnapshotFile.close = close
    db.write(originals)
    db.close()
    return out


def _in_fresh_process(fn, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def print_table(results: list[dict]) -> None:
    lines = [
        ("profiles", lambda r: f"{r['profiles']:,}"),
        ("chunk (CJO_SNAPSHOT_CHUNK)", lambda r: f"{r['chunk']:,}"),
        ("rows written", lambda r: f"{r['rows']:,}"),
        ("Parquet MB", lambda r: _mb(r["parquet_bytes"])),
        ("Parquet row groups", lambda r: f"{r['row_groups']:,}"),
        ("full snapshot wall s", lambda r: f"{r['full_s']:.2f}"),
        ("full snapshot CPU s", lambda r: f"{r['full_cpu_s']:.2f}"),
        ("profiles/s", lambda r: f"{r['profiles'] / r['full_s']:,.0f}"),
        ("agent: longest gap ms", lambda r: f"{r['agent_max_gap_ms']:.1f}"),
        ("agent: median gap ms", lambda r: f"{r['agent_median_gap_ms']:.2f}"),
        ("agent: iterations", lambda r: f"{r['agent_iterations']:,}"),
        ("agent: iterations/s", lambda r: f"{r['agent_iterations'] / r['full_s']:,.1f}"),
        ("snapshot_max_pause_ms (stat)", lambda r: f"{r['max_pause_stat_ms']:.1f}"),
        ("final close+sha256 ms", lambda r: f"{r['full_close_ms']:.1f}"),
        ("delta: profiles (1%)", lambda r: f"{r['delta_profiles']:,}"),
        ("delta: rows / MB", lambda r: f"{r['delta_rows']:,} / {_mb(r['delta_bytes'])}"),
        ("delta: wall ms", lambda r: f"{r['delta_ms']:.1f}"),
        ("delta: agent longest gap ms", lambda r: f"{r['delta_agent_max_gap_ms']:.1f}"),
        ("delta: snapshot_last_pause_ms", lambda r: f"{r['delta_pause_stat_ms']:.1f}"),
        ("RSS before snapshot MB", lambda r: _mb(r["rss_before"])),
        ("peak RSS after full MB", lambda r: _mb(r["peak_rss_full"])),
        ("peak RSS after delta MB", lambda r: _mb(r["peak_rss"])),
    ]
    width = max(len(label) for label, _ in lines) + 2
    col = max(14, *(len(f(r)) + 2 for r in results for _, f in lines))
    print()
    for label, f in lines:
        print(f"{label:<{width}}" + "".join(f"{f(r):>{col}}" for r in results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="profiles on the partition, one database and run per size")
    parser.add_argument("--chunk", type=int, default=250,
                        help="CJO_SNAPSHOT_CHUNK of every run (default 1000)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[1000, 4000],
                        help="further chunk sizes run on the largest size (none: --sweep)")
    parser.add_argument("--delta-percent", type=float, default=1.0,
                        help="share of the profiles changed before the delta snapshot")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path,
                        help="keep the databases here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)
    where = args.dir or Path(tempfile.mkdtemp(prefix="cjo-bench-snapshots-"))
    print(f"cpu count {os.cpu_count()}, load average {_load()}; partition databases in "
          f"{where}", flush=True)
    results = []
    try:
        for k, n in enumerate(args.profiles):
            workdir = where / f"n{n}"
            db_path = workdir / "profiles-db" / f"{PARTITION}.db"
            if db_path.exists():
                print(f"\n{n:,} profiles: reusing {db_path}", flush=True)
            else:
                db_path.parent.mkdir(parents=True, exist_ok=True)
                print(f"\n{n:,} profiles: generating {db_path}", flush=True)
                g = generate(db_path, workdir, n, args.seed)
                print(f"  written in {g['write_s']:.1f} s ({n / g['write_s']:,.0f} profiles/s), "
                      f"with flush and compaction {g['total_s']:.1f} s; values "
                      f"{_mb(g['value_bytes'])} MB (mean {g['value_bytes'] / n:,.0f} B), "
                      f"on disk {_mb(g['disk_bytes'])} MB", flush=True)
            chunks = [args.chunk]
            if n == max(args.profiles) and k == args.profiles.index(n):
                chunks += [c for c in args.sweep if c != args.chunk]
            for chunk in chunks:
                r = _in_fresh_process(measure, str(db_path), str(workdir), n, chunk,
                                      args.delta_percent, args.seed)
                results.append(r)
                print(f"  chunk {chunk:,}: full {r['full_s']:.2f} s, agent's longest gap "
                      f"{r['agent_max_gap_ms']:.1f} ms, snapshot_max_pause_ms "
                      f"{r['max_pause_stat_ms']:.1f}, delta {r['delta_ms']:.1f} ms, "
                      f"peak RSS {_mb(r['peak_rss'])} MB; load average {_load()}", flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(where, ignore_errors=True)
    print_table(results)


if __name__ == "__main__":
    main()
