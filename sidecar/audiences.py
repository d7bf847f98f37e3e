"""Batch audiences: segments defined by one read-only SELECT of profile ids over the sidecar's
tables (`events`, `journey_state`, `snapshot_profiles`, `audience_members`), which the stream
cannot compute event by event ("top 10% by spend in the last 30 days").

Each run computes the new set and compares it with the previous run's as sets:
    entered = new EXCEPT old        left = old EXCEPT new
and sends one `audience` input per change to the profile-inputs topic, keyed by profile id (the
profile's own partition), so the profile agent applies it in order with the profile's events.

The SELECT runs on a locked connection (`sidecar.sandbox`): it reads the sidecar's tables and
nothing else, no file, no URL, no extension, whatever it says. On Spark it is checked by
DuckDB's parser and by Spark's (`sidecar.spark.select_problem`) and runs on the sidecar's
session, which reads no file through SQL (docs/sidecar.md says what is enforced there).

Crash safety: the run's set is stored as pending (with its run number) before anything is sent,
and becomes the audience's set only once every record is acknowledged by the broker. If runs
were cut short since the last complete one, the next cannot know which of their records
arrived: it says `entered` to every member of the new set, and `left` to everyone of the last
complete set or of any broken run's set who is not in the new one. The profile agent applies a
membership it already has as no change, and a run number not newer than the last it applied
not at all, so what is sent twice changes nothing. On Spark, where each statement is its own
commit, the statements of `compute` and `complete` are in an order that leaves, after a crash
between any two, a state from which the next run sends at least what it must (a run marked
incomplete, or the uncertain set still holding what may have been sent).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
from aiokafka import AIOKafkaProducer

from cjo.clock import Clock
from schemas.internal import ProfileInputCodec
from sidecar.engines import engine_of, run as run_sql
from sidecar.sandbox import require_locked
from state.definitions import Segment
from state.sql import read_only_select_problem

log = logging.getLogger(__name__)


class AudienceError(RuntimeError):
    """Some audiences' SQL failed (the others ran): (segment, problem) for each."""

    def __init__(self, failed: list[tuple[str, str]], done: list) -> None:
        super().__init__("; ".join(f"audience {sid}: {problem}" for sid, problem in failed))
        self.failed, self.done = failed, done


@dataclass
class AudienceRun:
    segment: str
    run: int
    members: int
    entered: list[str]
    left: list[str]


SET = {"segment": "string", "profile_id": "string"}
RUNS = {"segment": "string", "run": "bigint", "completed": "boolean", "completed_at": "bigint"}


def prepare(db) -> None:
    e = engine_of(db)
    db.execute(e.create_table("audience_members", SET))
    db.execute(e.create_table("audience_pending", SET))
    # Everyone a run since the last complete one may have told `entered`.
    db.execute(e.create_table("audience_uncertain", SET))
    db.execute(e.create_table("audience_runs", RUNS, key="segment"))


def _select(db, sql: str) -> None:
    """The audience's rows as the view `audience_result`, from its SELECT run as written (not
    pasted into other SQL, so its comments and semicolons mean what they meant); on DuckDB in
    a transaction that is rolled back."""
    if engine_of(db).name == "spark":
        result = db.sql(sql)
        if "profile_id" not in result.columns:
            raise ValueError("an audience's SELECT must return a profile_id column")
        result.df.createOrReplaceTempView("audience_result")
        return
    db.execute("BEGIN TRANSACTION")
    try:
        result = db.sql(sql)
        if "profile_id" not in result.columns:
            raise ValueError("an audience's SELECT must return a profile_id column")
        rows = result.to_arrow_table()
    finally:
        db.execute("ROLLBACK")
    db.register("audience_result", rows)


def _unselect(db) -> None:
    if engine_of(db).name == "spark":
        db.execute("DROP VIEW IF EXISTS audience_result")
    else:
        db.unregister("audience_result")


def select_problem(db, sql: str) -> str | None:
    """Why `sql` may not run as an audience on this connection's engine (None: it may)."""
    problem = read_only_select_problem(sql)
    if problem is None and engine_of(db).name == "spark":
        from sidecar.spark import select_problem as spark_problem

        problem = spark_problem(db, sql)
    return problem


def spark_errors() -> tuple[type, ...]:
    from sidecar.spark import error_types

    return error_types()


def compute(db, segment: Segment) -> AudienceRun:
    """Run the audience's SELECT and store its set as pending; return the changes to send."""
    sid = segment.id
    problem = select_problem(db, segment.sql)  # validated on apply: a second look
    if problem:
        raise ValueError(f"audience {sid}: {problem}")
    require_locked(db)
    e = engine_of(db)
    _select(db, segment.sql)
    previous = db.execute("SELECT run, completed FROM audience_runs WHERE segment = ?",
                          [sid]).fetchone()
    number = previous[0] + 1 if previous else 1
    broken = previous is not None and not previous[1]
    sure = ("SELECT profile_id FROM audience_members WHERE false AND segment = $sid" if broken else
            "SELECT profile_id FROM audience_members WHERE segment = $sid")
    maybe = ("SELECT profile_id FROM audience_members WHERE segment = $sid UNION "
             "SELECT profile_id FROM audience_uncertain WHERE segment = $sid")
    run_sql(db, e.begin())
    try:
        run_sql(db, e.temp_table("audience_new", "SELECT DISTINCT CAST(profile_id AS STRING) AS "
                                             "profile_id FROM audience_result "
                                             "WHERE profile_id IS NOT NULL"))
        entered = [r[0] for r in db.execute(
            f"SELECT profile_id FROM audience_new EXCEPT ({sure}) ORDER BY 1",
            {"sid": sid}).fetchall()]
        left = [r[0] for r in db.execute(
            f"({maybe}) EXCEPT SELECT profile_id FROM audience_new ORDER BY 1",
            {"sid": sid}).fetchall()]
        members = db.execute("SELECT count(*) FROM audience_new").fetchone()[0]
        db.execute("DELETE FROM audience_pending WHERE segment = ?", [sid])
        db.execute("INSERT INTO audience_pending SELECT ?, profile_id FROM audience_new", [sid])
        db.execute("INSERT INTO audience_uncertain SELECT ?, profile_id FROM audience_new "
                   "EXCEPT SELECT segment, profile_id FROM audience_uncertain", [sid])
        db.execute(e.upsert("audience_runs", RUNS, "segment"), [sid, number, False, None])
        run_sql(db, e.drop_temp("audience_new"))
        run_sql(db, e.commit())
    except Exception:
        run_sql(db, e.rollback())
        raise
    finally:
        _unselect(db)
    return AudienceRun(sid, number, members, entered, left)


def complete(db, run: AudienceRun, at: int) -> None:
    """Every change of the run is acknowledged: its set becomes the audience's."""
    e = engine_of(db)
    run_sql(db, e.begin())
    db.execute("DELETE FROM audience_members WHERE segment = ?", [run.segment])
    db.execute("INSERT INTO audience_members SELECT segment, profile_id FROM audience_pending "
               "WHERE segment = ?", [run.segment])
    db.execute("DELETE FROM audience_pending WHERE segment = ?", [run.segment])
    db.execute("DELETE FROM audience_uncertain WHERE segment = ?", [run.segment])
    db.execute("UPDATE audience_runs SET completed = true, completed_at = ? WHERE segment = ?",
               [at, run.segment])
    run_sql(db, e.commit())


def records(run: AudienceRun, now: int):
    """(key, ProfileInput record) of every change of the run."""
    for member, ids in ((True, run.entered), (False, run.left)):
        for pid in ids:
            yield pid, {"kind": "audience", "profile_id": pid, "source_partition": -1,
                        "source_offset": -1, "event": None, "visitor_id": None,
                        "member_id": None, "merge_id": None, "state": None, "journey": None,
                        "seq": None, "due": None, "audience": run.segment, "member": member,
                        "run": run.run, "time": now}


async def run_audiences(settings, db, segments: list[Segment]) -> list[AudienceRun]:
    """Compute every batch audience on `db` (a `sidecar.sandbox` connection) and send its
    changes; returns what each run did."""
    audiences = [s for s in segments if s.sql is not None]
    if not audiences:
        return []
    prepare(db)
    topic = settings.topic("profile-inputs")
    codec = ProfileInputCodec(topic)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                enable_idempotence=True)
    await producer.start()
    done, failed = [], []
    try:
        for segment in audiences:
            now = Clock().now_ms()
            try:
                run = compute(db, segment)
            except (duckdb.Error, ValueError, *spark_errors()) as exc:  # the audience's SQL
                log.error("audience %s not computed: %s", segment.id, exc)
                failed.append((segment.id, str(exc)))
                continue
            futures = [await producer.send(topic, key=pid.encode(), value=codec.encode(rec))
                       for pid, rec in records(run, now)]
            await producer.flush()
            for f in futures:
                await f  # raises if the broker refused one: the run stays pending
            complete(db, run, now)
            log.info("audience %s run %d: %d members, %d entered, %d left", run.segment,
                     run.run, run.members, len(run.entered), len(run.left))
            done.append(run)
    finally:
        await producer.stop()
    if failed:
        raise AudienceError(failed, done)
    return done
