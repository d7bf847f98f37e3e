"""`cjo sidecar run`: follow the snapshots topic, fold every new snapshot file into DuckDB (or, with
`--engine spark`, into Iceberg tables through Spark SQL), archive the events the profiles applied
(up to at least the snapshots' offsets), and write the journeys' funnels (stage sets counted) for
the ops views and the terminal."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from cjo.kafka_io import read_to_end
from cjo.settings import Settings
from schemas.codec import AvroCodec
from sidecar.archive import EventArchive, archive_to_end
from sidecar.audiences import AudienceError, run_audiences
from sidecar.funnels import funnel, journeys, steps
from sidecar.sandbox import DatabaseBusy, connect, open_database
from sidecar.store import SparseStore

log = logging.getLogger(__name__)
# Seconds to wait for the database file when opening it again around the audiences' locked
# connection (a `cjo sidecar query` may hold it for a moment in between).
REOPEN_WAIT = 10.0


def database_path(settings: Settings) -> Path:
    return settings.data_dir / "sidecar" / f"{settings.app_id}.duckdb"


def archive_path(settings: Settings, spark=None) -> Path:
    """The event archive's directory; the Spark sidecar keeps its own (its archive offsets are
    in its Iceberg tables, DuckDB's in its database: one directory for both would hold the same
    inputs twice under other file names)."""
    base = settings.data_dir / "sidecar" / settings.app_id
    return base / "spark" / "archive" if spark is not None else base / "archive"


def results_path(settings: Settings) -> Path:
    return settings.funnels_file


def write_funnels(settings: Settings, store: SparseStore, stage_order: dict) -> dict:
    result = {"computed_at": int(time.time() * 1000),
              "offsets": dict(store.db.execute(
                  'SELECT "partition", "offset" FROM partition_offsets').fetchall()),
              "journeys": [[{**asdict(c), "conversion": c.conversion}
                            for c in funnel(store.db, j, v, stage_order.get((j, v)))]
                           for j, v in journeys(store.db)],
              "steps": [[asdict(c) for c in steps(store.db, j, v)]
                        for j, v in journeys(store.db)]}
    path = results_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return result


def _open(settings: Settings, wait: float = 0.0, spark=None
          ) -> tuple[SparseStore, EventArchive]:
    """The trusted connection (folds, archive, funnels, the check) and the archive on it;
    DatabaseBusy while another process holds the database file. With `spark` (a
    sidecar.spark.SparkOptions), a Spark session over the app's Iceberg tables instead."""
    if spark is not None:
        store = SparseStore.on(spark.connect(settings))
    else:
        path = database_path(settings)
        store = open_database(lambda: SparseStore(str(path)), path, wait)
    return store, EventArchive(store.db, archive_path(settings, spark))


async def follow(settings: Settings, once: bool = False, spark=None) -> dict:
    database_path(settings).parent.mkdir(parents=True, exist_ok=True)
    store, archive = _open(settings, spark=spark)
    codec = AvroCodec("snapshot_manifest", settings.topic("snapshots"))
    consumer = AIOKafkaConsumer(settings.topic("snapshots"),
                                bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        latest: dict[int, dict] = {}
        async for records in read_to_end(consumer):
            for r in records:
                manifest = codec.decode(r.value)
                latest[manifest["partition"]] = manifest
        for manifest in latest.values():
            store.load_manifest(manifest)
        store.checkpoint()
        # After the manifests: the end of profile-inputs is at or past every snapshot offset.
        await archive_to_end(settings, archive)
        order = await _stage_order(settings)
        result = write_funnels(settings, store, order)
        result["audiences"], store, archive = await _audiences(settings, store, archive)
        audiences_at = time.monotonic()
        while not once:
            if time.monotonic() - audiences_at >= settings.audience_interval:
                await archive_to_end(settings, archive)
                _, store, archive = await _audiences(settings, store, archive)
                audiences_at = time.monotonic()
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    store.load_manifest(codec.decode(r.value))
            if batches:
                store.checkpoint()
                await archive_to_end(settings, archive)
                result = write_funnels(settings, store, await _stage_order(settings))
        return result
    finally:
        await consumer.stop()
        store.db.close()


async def _audiences(settings: Settings, store: SparseStore, archive: EventArchive
                     ) -> tuple[list[dict], SparseStore, EventArchive]:
    """Run the batch audiences (SQL segments) on a locked connection (sidecar.sandbox) and send
    their changes to the profiles. DuckDB opens a file with one configuration per process, so
    the trusted connection is closed meanwhile and opened again: returns what the runs did, and
    the store and archive to go on with."""
    segments = [s for s in (await _definitions(settings)).segments if s.sql is not None]
    if not segments:
        return [], store, archive
    runs, failed = [], []
    if store.engine.name == "spark":  # one session; what the SQL may read is checked per run
        try:
            runs = await run_audiences(settings, store.db, segments)
        except AudienceError as exc:
            runs, failed = exc.done, exc.failed
        return _audience_rows(runs, failed), store, archive
    store.db.close()
    try:
        db = connect(database_path(settings), archive_path(settings), wait=REOPEN_WAIT)
        try:
            runs = await run_audiences(settings, db, segments)
        except AudienceError as exc:  # reported; the other audiences and the funnels go on
            runs, failed = exc.done, exc.failed
        finally:
            db.close()
    finally:
        store, archive = _open(settings, REOPEN_WAIT)
    return _audience_rows(runs, failed), store, archive


def _audience_rows(runs, failed) -> list[dict]:
    return [{"segment": r.segment, "run": r.run, "members": r.members,
             "entered": len(r.entered), "left": len(r.left)} for r in runs] + \
        [{"segment": sid, "error": problem} for sid, problem in failed]


async def _definitions(settings: Settings):
    from topology.pipeline.definitions import build, read_all

    return build(await read_all(settings))


async def _stage_order(settings: Settings) -> dict[tuple[str, int], list[str]]:
    """The stages of every journey version in their defined order (from the definitions)."""
    defs = await _definitions(settings)
    return {(jid, n): [s.id for s in j.stages]
            for jid, versions in defs.journey_versions.items() for n, j in versions.items()}


def print_audiences(result: dict) -> None:
    for a in result.get("audiences", ()):
        if "error" in a:
            print(f"audience {a['segment']} NOT computed: {a['error']}")
            continue
        print(f"audience {a['segment']} run {a['run']}: {a['members']} members, "
              f"{a['entered']} entered, {a['left']} left (sent to the profiles)")


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:.1f}{unit}"
    return f"{ms:.0f}ms"


def print_funnels(result: dict) -> None:
    for stages, in_steps in zip(result["journeys"], result.get("steps", [])):
        if not stages:
            continue
        first = stages[0]
        print(f"journey {first['journey']} v{first['version']}")
        # Exits: through the stage's own exit criteria, and through the journey's from it.
        print(f"  {'stage':<12}{'entered':>9}{'in now':>9}{'milestone':>11}{'exit st.':>10}"
              f"{'exit jn.':>10}{'to next':>9}{'conv.':>7}{'goal':>7}{'p50 stay':>10}"
              f"{'p90 stay':>10}")
        for s in stages:
            conv = "-" if s["conversion"] is None else f"{s['conversion']:.0%}"
            print(f"  {s['stage']:<12}{s['entered']:>9}{s['in_now']:>9}{s['milestone']:>11}"
                  f"{s['exited_stage']:>10}{s['exited_journey']:>10}{s['to_next']:>9}"
                  f"{conv:>7}{s['goal']:>7}"
                  f"{_duration(s['p50_ms']):>10}{_duration(s['p90_ms']):>10}")
        print("  (stay: each profile's latest stay in the stage, once it has ended)")
        if in_steps:
            print("  now in: " + ", ".join(f"{c['stage']}/{c['step']} {c['profiles']}"
                                           for c in in_steps))


def check_report(settings: Settings, percent: float, spark=None):
    """Load what is on the snapshots topic, archive the events, check a sample."""
    from sidecar.check import check

    asyncio.run(follow(settings, once=True, spark=spark))
    defs = asyncio.run(_definitions(settings))
    store, _ = _open(settings, spark=spark)
    try:
        report = check(store.db, percent,
                       segments={s.id: s.condition for s in defs.segments if s.condition is not None})
    finally:
        store.db.close()
    return report


def run_check(settings: Settings, percent: float, spark=None) -> int:
    """`cjo sidecar check`: exit 1 on a violation."""
    from sidecar.spark import SparkUnavailable

    try:
        report = check_report(settings, percent, spark)
    except (DatabaseBusy, SparkUnavailable) as exc:
        print(f"cjo sidecar check: {exc}", file=sys.stderr)
        return 2
    print(f"checked {report.sampled_profiles} profiles ({percent:g}% Bernoulli sample); "
          f"segments recounted from the archive for {report.recounted_profiles}")
    for name, count in report.violations.items():
        examples = ", ".join(report.examples[name])
        print(f"  {name:<22}{count:>6}" + (f"   e.g. {examples}" if count else ""))
    print("OK" if report.ok else "VIOLATIONS FOUND")
    return 0 if report.ok else 1


def run(settings: Settings, once: bool, spark=None) -> int:
    from sidecar.spark import SparkUnavailable

    try:
        result = asyncio.run(follow(settings, once, spark))
    except (DatabaseBusy, SparkUnavailable) as exc:
        print(f"cjo sidecar run: {exc}", file=sys.stderr)
        return 1
    print_audiences(result)
    print_funnels(result)
    print(f"results in {results_path(settings)}")
    return 0
