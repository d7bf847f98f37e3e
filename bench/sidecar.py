"""Benchmark of the analytical sidecar (sidecar/) on synthetic journey-state snapshots.

For each size (total rows of a full snapshot file) it writes a full snapshot Parquet file as the
snapshot agent writes it (topology/pipeline/snapshots.py `SnapshotFile`: its schema, a row group per
`CJO_SNAPSHOT_CHUNK` profiles; rows as state/sparse.py `profile_rows` makes them) and a delta
file naming 1% of its profiles, then measures with time.perf_counter:

  load     SparseStore(<file>.duckdb).load_manifest(manifest of the full file): checksum, staging
           and fold (the checksum's share is timed apart as well)
  delta    load_manifest of the next manifest (full + delta): folding the delta in
  funnels  sidecar.funnels.journeys(db), then funnel(db, journey, version, stage order) for each
  check    sidecar.check.check(db, 10.0), and at 100% to show what the sample saves

and prints the Parquet and DuckDB file sizes, the peak RSS of the process that ran the sidecar
(each size runs in its own fresh process, so the figure is that size's alone) and the CPU count.

With `--engine spark` the same steps run on Spark SQL over Iceberg (sidecar/spark.py: local[2],
a Hadoop catalog in the run's directory; the driver's start is timed apart and the peak RSS is
the driver JVM's), and `--engine both` prints the two side by side.

Run from the repository root (prints figures; it is not a test):

    python -m bench.sidecar                          # 1,000,000 and 10,000,000 rows
    python -m bench.sidecar --rows 1000000 --dir /tmp/sidecar-bench   # keep the files there
    python -m bench.sidecar --rows 1000000 --engine both              # DuckDB and Spark
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.process import peak_rss_mb

# Exactly the schema of topology/pipeline/snapshots.py's snapshot files.
SCHEMA = pa.schema([
    ("profile_id", pa.string()), ("journey", pa.string()), ("version", pa.int32()),
    ("key", pa.string()), ("first", pa.int64()), ("last_left", pa.int64()),
    ("value", pa.string()), ("last_reached", pa.int64())])

# -- the synthetic population ------------------------------------------------------------------
# Rows of a profile: its `profile` marker (last event time; `merged` for some), a row per segment
# it is in, and per journey entered: journey, stage:<id> per stage reached, milestone:<id>, at most
# one exit (the stage's own exit:<stage>:<n>, or the journey's exit:journey:0 with
# exit:journey:0@<stage>) or goal, and position. One run each, so a cell's last_reached is its
# first. (Real files also hold step:/branch: rows; they are left out, so a given row count here
# stands for somewhat more profiles than in production.)
SEGMENTS = {"browsers": 0.5, "buyers": 0.3, "newsletter": 0.2, "vip": 0.05, "churn-risk": 0.1,
            "app-users": 0.25}  # share of profiles in each
MERGED = 0.03  # profiles a merge touched (marker value `merged`)
# Five journeys of four stages. Stage ids are deliberately not in alphabetical order, so that the
# funnels need the defined order (as `cjo sidecar run` passes it) to find each stage's next one.
JOURNEYS = {
    "onboarding": ["signup", "profile", "first-order", "repeat"],
    "cart-recovery": ["abandoned", "reminded", "returned", "bought"],
    "upsell": ["eligible", "offered", "clicked", "upgraded"],
    "reactivation": ["lapsed", "contacted", "visited", "active"],
    "loyalty": ["member", "silver", "gold", "platinum"],
}
ENTER = {"onboarding": 0.6, "cart-recovery": 0.45, "upsell": 0.35,  # share of profiles
         "reactivation": 0.25, "loyalty": 0.15}                      # that entered it
ON = (0.6, 0.45, 0.3)                 # P(reach stage k+1 | reached stage k): a narrowing funnel
MILESTONE = 0.7                       # a stage left by its milestone (else by a later entry)
GOAL = (0.02, 0.05, 0.15, 0.3)        # P(goal), by the deepest stage reached
EXIT = 0.1                            # P(a stage exit at the deepest stage)
JOURNEY_EXIT = 0.05                   # P(the journey's exit, from the deepest stage)
COMPLETE = 0.3                        # at the last stage: its milestone, journey completed
VERSION_2 = 0.3                       # profiles that entered the journey's second version

START = 1_767_225_600_000             # 2026-01-01 UTC, in ms: entries spread over 90 days
DAY = 86_400_000
MIN_GAP = 60_000                      # at least a minute between two moves: times strictly grow

CHUNK = 100_000  # profiles generated at a time (~1M rows): bounded memory
GROUP = 1_000  # profiles per row group of a full file: CJO_SNAPSHOT_CHUNK's default
DELTA_EVERY = 100  # the delta names every 100th profile: 1% changed


class Draws:
    """Uniform [0, 1) draws from Arrow's generator (numpy is not a dependency): each draw gets its
    own seed, so a run is reproducible."""

    def __init__(self, seed: int) -> None:
        self.seeds = itertools.count(seed * 1_000_003)

    def __call__(self, n: int) -> pa.Array:
        return pc.random(n, initializer=next(self.seeds))


def profile_ids(indices: range) -> pa.Array:
    """UUID-shaped ids (visitor ids are UUIDs), a fixed function of the index so that the delta
    names the same profiles as the full file (an odd multiplier mod 2**128 is a bijection)."""
    ids = []
    for i in indices:
        h = f"{(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC835 % (1 << 128):032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return pa.array(ids, pa.string())


def _key_order(journey: str) -> dict[str, int]:
    """state/sparse.py writes a journey's keys sorted, then its `position` row; this rank (plus
    the journey's rank) lets a chunk be sorted into the same row order."""
    keys = sorted(["journey", "goal"] + [f"{p}:{s}" for p in ("stage", "milestone")
                                         for s in JOURNEYS[journey]] + ["exit:", "exit:journey:"])
    return {**{k: i for i, k in enumerate(keys)}, "position": len(keys)}


def journey_rows(rank: int, journey: str, n: int, draw: Draws) -> list[pa.Table]:
    """The sparse rows of one journey for a chunk of n profiles (pidx: position in the chunk,
    kord: rank of the row within the profile; `rank`: the journey's among the sorted ids)."""
    stages = JOURNEYS[journey]
    order = _key_order(journey)
    who = pc.filter(pa.array(range(n), pa.int64()), pc.less(draw(n), ENTER[journey]))
    m = len(who)
    version = pc.cast(pc.if_else(pc.less(draw(m), VERSION_2), 2, 1), pa.int32())

    def ms(start: int, spread: int) -> pa.Array:  # whole ms in [start, start + spread)
        return pc.cast(pc.floor(pc.add(pc.multiply(draw(m), spread), start)), pa.int64())

    def gap() -> pa.Array:
        return ms(MIN_GAP, 3 * DAY)

    # Stage k is reached at t[k] (stage 1 together with the journey); reached[k] narrows.
    t = [ms(START, 90 * DAY)]
    reached = [pa.repeat(True, m)]
    for k in range(1, len(stages)):
        reached.append(pc.and_(reached[-1], pc.less(draw(m), ON[k - 1])))
        t.append(pc.add(t[-1], gap()))
    deepest = pa.repeat(pa.scalar(0, pa.int8()), m)  # index of the deepest stage reached
    for r in reached[1:]:
        deepest = pc.add(deepest, pc.cast(r, pa.int8()))

    # How the profile stands at its deepest stage: goal, stage exit, journey exit, completed, or
    # still in it.
    u = draw(m)
    goal_p = pc.take(pa.array(GOAL), deepest)
    goal = pc.less(u, goal_p)
    exit_ = pc.and_(pc.invert(goal), pc.less(u, pc.add(goal_p, EXIT)))
    journey_exit = pc.and_(pc.invert(pc.or_(goal, exit_)),
                           pc.less(u, pc.add(goal_p, EXIT + JOURNEY_EXIT)))
    gone = pc.or_(pc.or_(goal, exit_), journey_exit)
    complete = pc.and_(pc.equal(deepest, len(stages) - 1),
                       pc.and_(pc.invert(gone),
                               pc.less(u, pc.add(goal_p, EXIT + JOURNEY_EXIT + COMPLETE))))
    left = pc.or_(gone, complete)
    end = pc.add(pc.choose(deepest, *t), gap())  # when it left, after its last stage began
    left_at = pc.if_else(left, end, pa.scalar(None, pa.int64()))

    def emit(mask, key, first, last_left=None, value=None, kord_key=None,
             cell=True) -> pa.Table:
        """The rows of the entrants in `mask`; each column given per entrant, as one value for
        all, or None (null). A sparse cell (not `position`) has last_reached = first."""
        pidx = pc.filter(who, mask)
        picked = len(pidx)

        def column(values, typ) -> pa.Array:
            if values is None:
                return pa.nulls(picked, typ)
            if isinstance(values, pa.Array):
                return pc.filter(values, mask)
            return pa.repeat(pa.scalar(values, typ), picked)

        kord = 100 + rank * 64 + order[kord_key or key]
        return pa.table({
            "pidx": pidx, "kord": pa.repeat(pa.scalar(kord, pa.int32()), picked),
            "journey": pa.repeat(journey, picked), "version": pc.filter(version, mask),
            "key": column(key, pa.string()), "first": column(first, pa.int64()),
            "last_left": column(last_left, pa.int64()), "value": column(value, pa.string()),
            "last_reached": column(first if cell else None, pa.int64())})

    everyone = pa.repeat(True, m)
    out = [emit(everyone, "journey", t[0], left_at)]
    for k, stage in enumerate(stages):
        last = k == len(stages) - 1
        # A stage is left when the next is reached, else when the journey is left; else open:
        # so at most one stage of a journey is open, and only while the journey is.
        stage_left = left_at if last else pc.if_else(reached[k + 1], t[k + 1], left_at)
        out.append(emit(reached[k], f"stage:{stage}", t[k], stage_left))
        milestone = (complete if last
                     else pc.and_(reached[k + 1], pc.less(draw(m), MILESTONE)))
        out.append(emit(milestone, f"milestone:{stage}", end if last else t[k + 1]))
    exit_keys = pa.array([f"exit:{s}:{i}" for s in stages for i in (0, 1)])
    which = pc.add(pc.multiply(pc.cast(deepest, pa.int64()), 2),
                   pc.cast(pc.greater(draw(m), 0.8), pa.int64()))  # mostly the first exit rule
    out.append(emit(exit_, pc.take(exit_keys, which), end, kord_key="exit:"))
    out.append(emit(journey_exit, "exit:journey:0", end, kord_key="exit:journey:"))
    out.append(emit(journey_exit, pc.take(pa.array([f"exit:journey:0@{s}" for s in stages]),
                                          deepest), end, kord_key="exit:journey:"))
    out.append(emit(goal, "goal", end))
    where = pc.if_else(left, "left", pc.take(pa.array([f"{s}/wait" for s in stages]), deepest))
    out.append(emit(everyone, "position", t[0], left_at, where, cell=False))
    return out


def profile_level_rows(n: int, draw: Draws) -> list[pa.Table]:
    """Per profile its marker row (kord 0) and its segment rows (kord 1 + the segment's rank)."""
    everyone = pa.array(range(n), pa.int64())
    # The last event comes after every journey time generated (at most ~102 days after START).
    last_seen = pc.cast(pc.floor(pc.add(pc.multiply(draw(n), 17 * DAY), START + 103 * DAY)),
                        pa.int64())
    merged = pc.if_else(pc.less(draw(n), MERGED), "merged", pa.scalar(None, pa.string()))
    parts = [pa.table({
        "pidx": everyone, "kord": pa.repeat(pa.scalar(0, pa.int32()), n),
        "journey": pa.nulls(n, pa.string()), "version": pa.nulls(n, pa.int32()),
        "key": pa.repeat("profile", n), "first": last_seen,
        "last_left": pa.nulls(n, pa.int64()), "value": merged,
        "last_reached": pa.nulls(n, pa.int64())})]
    for rank, segment in enumerate(sorted(SEGMENTS)):
        members = pc.filter(everyone, pc.less(draw(n), SEGMENTS[segment]))
        m = len(members)
        parts.append(pa.table({
            "pidx": members, "kord": pa.repeat(pa.scalar(1 + rank, pa.int32()), m),
            "journey": pa.nulls(m, pa.string()), "version": pa.nulls(m, pa.int32()),
            "key": pa.repeat(f"segment:{segment}", m), "first": pa.nulls(m, pa.int64()),
            "last_left": pa.nulls(m, pa.int64()), "value": pa.nulls(m, pa.string()),
            "last_reached": pa.nulls(m, pa.int64())}))
    return parts


def snapshot_chunk(indices: range, draw: Draws) -> pa.Table:
    """The rows of a chunk of profiles in `profile_rows`'s order: per profile its marker row,
    its segment rows, then its journeys' rows; pidx (position in the chunk) and kord (rank of
    the row within the profile) are kept for cutting and row groups."""
    n = len(indices)
    parts = profile_level_rows(n, draw)
    for rank, journey in enumerate(sorted(JOURNEYS)):
        parts += journey_rows(rank, journey, n, draw)
    rows = pa.concat_tables(parts).sort_by([("pidx", "ascending"), ("kord", "ascending")])
    ids = pc.take(profile_ids(indices), rows["pidx"])
    return rows.append_column("profile_id", ids)


def write_groups(writer: pq.ParquetWriter, chunk: pa.Table, group: int | None) -> None:
    """Write a chunk as the agent does: a full snapshot adds `group` profiles at a time (a row
    group each); a delta adds all its profiles at once (pyarrow splits at 1Mi rows)."""
    chunk = chunk.select(SCHEMA.names).cast(SCHEMA)
    if group is None:
        writer.write_table(chunk)
        return
    starts = pc.indices_nonzero(pc.equal(chunk["key"], "profile")).to_pylist()  # marker rows
    bounds = starts[::group] + [len(chunk)]
    for begin, end in zip(bounds, bounds[1:]):
        writer.write_table(chunk.slice(begin, end - begin))


def write_snapshot(path: Path, indices: range, seed: int, max_rows: int | None = None,
                   group: int | None = None) -> dict:
    """Write the profiles `indices` (stopping at the last whole profile within max_rows) to one
    Parquet file, `group` profiles per row group; returns counts and generation time."""
    started = time.perf_counter()
    draw = Draws(seed)
    rows = profiles = 0
    with pq.ParquetWriter(path, SCHEMA) as writer:  # the agent's writer: defaults (snappy)
        for at in range(0, len(indices), CHUNK):
            chunk = snapshot_chunk(indices[at:at + CHUNK], draw)
            done = max_rows is not None and rows + len(chunk) >= max_rows
            if done and rows + len(chunk) > max_rows:
                # Stop before the profile that would pass the target: whole profiles only.
                chunk = chunk.filter(pc.less(chunk["pidx"], chunk["pidx"][max_rows - rows]))
            write_groups(writer, chunk, group)
            rows += len(chunk)
            profiles += pc.count_distinct(chunk["pidx"]).as_py()
            if done:
                break
    return {"rows": rows, "profiles": profiles, "seconds": time.perf_counter() - started}


def file_entry(path: Path, kind: str, offset: int, written: dict) -> dict:
    """A manifest's file entry, as the snapshot agent publishes it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "kind": kind, "offset": offset, "profiles": written["profiles"],
            "rows": written["rows"], "sha256": digest.hexdigest()}


# -- measuring (in a fresh process per size) ---------------------------------------------------

def _db_bytes(db_path: Path) -> int:
    # DuckDB may still hold part of the data in its write-ahead log next to the file.
    wal = db_path.with_name(db_path.name + ".wal")
    return db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _open_spark(db_path: str, out: dict):
    """A Spark store over a Hadoop catalog next to the DuckDB file, the driver's start timed."""
    from cjo.settings import Settings
    from sidecar.spark import SparkOptions
    from sidecar.store import SparseStore

    started = time.perf_counter()
    db = SparkOptions().connect(Settings(app_id="bench", data_dir=Path(db_path + ".spark")))
    out["start_s"] = time.perf_counter() - started
    conf = db.spark.sparkContext.getConf()
    out["threads"] = conf.get("spark.master")
    out["memory_limit"] = "driver " + conf.get("spark.driver.memory", "1g")
    return SparseStore.on(db)


def measure(db_path: str, full: dict, delta: dict, engine: str = "duckdb") -> dict:
    """Load, fold, funnel and check, timed; runs in its own process (imports the sidecar here so
    that the parent's memory and imports do not count)."""
    from sidecar.check import check
    from sidecar.funnels import funnel, journeys
    from sidecar.store import SparseStore

    out = {"engine": engine}
    started = time.perf_counter()
    hashlib.sha256(Path(full["path"]).read_bytes()).hexdigest()  # what load_manifest does first
    out["checksum_s"] = time.perf_counter() - started

    if engine == "spark":
        store = _open_spark(db_path, out)
        db = store.db
    else:
        store = SparseStore(db_path)
        db = store.db
        out["threads"], out["memory_limit"] = db.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')").fetchone()
    started = time.perf_counter()
    store.load_manifest({"partition": 0, "offset": full["offset"], "files": [full]})
    store.checkpoint()  # Spark: publishes the fold to readers
    out["load_s"] = time.perf_counter() - started
    out["db_bytes_load"] = (_dir_bytes(Path(db_path + ".spark")) if engine == "spark"
                            else _db_bytes(Path(db_path)))

    # The agent's next manifest lists the full file and the delta; only the delta is folded.
    started = time.perf_counter()
    store.load_manifest({"partition": 0, "offset": delta["offset"], "files": [full, delta]})
    store.checkpoint()
    out["delta_s"] = time.perf_counter() - started
    out["live_rows"] = db.execute("SELECT count(*) FROM journey_state").fetchone()[0]

    started = time.perf_counter()
    found = journeys(db)
    funnels = [funnel(db, j, v, JOURNEYS.get(j)) for j, v in found]  # order as `cjo sidecar run`
    out["funnels_s"] = time.perf_counter() - started
    out["funnels"] = len(found)
    out["example"] = [(c.stage, c.entered, c.in_now, c.milestone, c.exited_stage,
                       c.exited_journey, c.to_next, c.goal) for c in funnels[0]] \
        if funnels else []

    for percent in (10.0, 100.0):
        started = time.perf_counter()
        report = check(db, percent, seed=1)
        out[f"check{percent:g}_s"] = time.perf_counter() - started
        out[f"check{percent:g}_profiles"] = report.sampled_profiles
        out[f"check{percent:g}_violations"] = sum(report.violations.values())

    if engine == "spark":
        out["db_bytes"] = _dir_bytes(Path(db_path + ".spark"))
        # The driver JVM's peak (pyspark starts it as a child of this process).
        from pyspark import SparkContext

        out["peak_rss"] = peak_rss_mb(SparkContext._gateway.proc.pid) * 2**20
        db.close()
        return out
    db.close()
    out["db_bytes"] = _db_bytes(Path(db_path))
    out["peak_rss"] = peak_rss_mb() * 2**20
    return out


def run_size(target: int, where: Path, engines: tuple[str, ...] = ("duckdb",)) -> list[dict]:
    where.mkdir(parents=True, exist_ok=True)
    full_path, delta_path = where / f"{target}-full.parquet", where / f"{target}-delta.parquet"
    db_path = where / f"{target}.duckdb"
    for stale in (db_path, db_path.with_name(db_path.name + ".wal")):
        stale.unlink(missing_ok=True)  # a kept --dir: start from an empty database
    shutil.rmtree(db_path.with_name(db_path.name + ".spark"), ignore_errors=True)

    print(f"\n{target:,} rows: generating in {where}", flush=True)
    # As many profiles as it takes to reach the target row count.
    written = write_snapshot(full_path, range(10 ** 12), seed=target, max_rows=target,
                             group=GROUP)
    full = file_entry(full_path, "full", 1_000_000, written)
    # The delta: the same profiles' ids, new states (a different seed) for every 100th one.
    changed = write_snapshot(delta_path, range(0, written["profiles"], DELTA_EVERY),
                             seed=target + 1)
    delta = file_entry(delta_path, "delta", 1_000_000 + changed["profiles"], changed)
    print(f"  full: {written['rows']:,} rows, {written['profiles']:,} profiles, "
          f"{written['seconds']:.1f} s; delta: {changed['rows']:,} rows, "
          f"{changed['profiles']:,} profiles", flush=True)

    results = []
    for engine in engines:
        # A fresh process per size and engine, so that its peak RSS is the sidecar's alone.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(measure, str(db_path), full, delta, engine).result()
        result.update(target=target, rows=written["rows"], profiles=written["profiles"],
                      gen_s=written["seconds"], parquet_bytes=full_path.stat().st_size,
                      delta_rows=changed["rows"], delta_profiles=changed["profiles"],
                      delta_bytes=delta_path.stat().st_size)
        print(f"  {engine}: load {result['load_s']:.2f} s, delta {result['delta_s']:.2f} s, "
              f"funnels {result['funnels_s']:.2f} s, check 10% {result['check10_s']:.2f} s",
              flush=True)
        results.append(result)
    return results


# -- output ------------------------------------------------------------------------------------

def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


ROWS = [  # (label, how to render a result)
    ("rows (full file)", lambda r: f"{r['rows']:,}"),
    ("profiles", lambda r: f"{r['profiles']:,}"),
    ("generate s", lambda r: f"{r['gen_s']:.1f}"),
    ("parquet MB (full / delta)", lambda r: f"{_mb(r['parquet_bytes'])} / {_mb(r['delta_bytes'])}"),
    ("engine (Spark: driver start s)",
     lambda r: r["engine"] + (f" ({r['start_s']:.1f})" if "start_s" in r else "")),
    ("(a) load+fold s", lambda r: f"{r['load_s']:.2f}"),
    ("    of which sha256 s", lambda r: f"{r['checksum_s']:.2f}"),
    ("    rows/s", lambda r: f"{r['rows'] / r['load_s']:,.0f}"),
    ("(b) delta fold s", lambda r: f"{r['delta_s']:.2f}"),
    ("    delta rows / profiles", lambda r: f"{r['delta_rows']:,} / {r['delta_profiles']:,}"),
    ("    live rows after", lambda r: f"{r['live_rows']:,}"),
    ("(c) funnels s (journey versions)", lambda r: f"{r['funnels_s']:.2f} ({r['funnels']})"),
    ("(d) check 10% s", lambda r: f"{r['check10_s']:.2f}"),
    ("    sampled profiles", lambda r: f"{r['check10_profiles']:,}"),
    ("    check 100% s (profiles)",
     lambda r: f"{r['check100_s']:.2f} ({r['check100_profiles']:,})"),
    ("    violations (10% / 100%)",
     lambda r: f"{r['check10_violations']} / {r['check100_violations']}"),
    ("db MB (after load / end)", lambda r: f"{_mb(r['db_bytes_load'])} / {_mb(r['db_bytes'])}"),
    ("peak RSS MB (sidecar process)", lambda r: _mb(r["peak_rss"])),
]


def print_table(results: list[dict]) -> None:
    for engine, first in {r["engine"]: r for r in reversed(results)}.items():
        print(f"\ncpu count {os.cpu_count()}; {engine}: threads {first['threads']}, "
              f"memory limit {first['memory_limit']}")
    width = max(len(label) for label, _ in ROWS) + 2
    cells = [[render(r) for r in results] for _, render in ROWS]
    col = max(len(c) for row in cells for c in row) + 2
    print("".join([f"{'':<{width}}"] + [f"{r['target']:>{col},}" for r in results]))
    for (label, _), row in zip(ROWS, cells):
        print("".join([f"{label:<{width}}"] + [f"{c:>{col}}" for c in row]))
    example = results[-1]["example"]
    if example:
        print(f"\nfunnel of the first journey version at {results[-1]['target']:,} rows "
              "(stage, entered, in now, milestone, stage exit, journey exit, to next, goal):")
        for stage in example:
            print("  " + "  ".join(str(x) for x in stage))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sidecar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="rows of the full snapshot file, one run per size")
    parser.add_argument("--engine", choices=["duckdb", "spark", "both"], default="duckdb",
                        help="the sidecar's engine (both: DuckDB, then Spark, side by side)")
    parser.add_argument("--dir", type=Path,
                        help="keep the files here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)
    where = args.dir or Path(tempfile.mkdtemp(prefix="cjo-bench-sidecar-"))
    try:
        engines = ("duckdb", "spark") if args.engine == "both" else (args.engine,)
        results = [r for n in args.rows for r in run_size(n, where, engines)]
    finally:
        if args.dir is None:
            shutil.rmtree(where, ignore_errors=True)
    print_table(results)


if __name__ == "__main__":
    main()
