"""Batch audiences: segments defined by one read-only SELECT of profile ids over the sidecar's
tables (`events`, `journey_state`, `snapshot_profiles`, `audience_members`), which the stream
cannot compute event by event ("top 10% by spend in the last 30 days").

Each run computes the new set and compares it with the previous run's as sets:
    entered = new EXCEPT old        left = old EXCEPT new
and sends one `audience` input per change to the profile-inputs topic, keyed by profile id (the
profile's own partition), so the profile agent applies it in order with the profile's events.

The SELECT runs on a locked connection (`sidecar.sandbox`): it reads the sidecar's tables and
nothing else, no file, no URL, no extension, whatever it says.

Crash safety: the run's set is stored as pending (with its run number) before anything is sent,
and becomes the audience's set only once every record is acknowledged by the broker. If runs
were cut short since the last complete one, the next cannot know which of their records
arrived: it says `entered` to every member of the new set, and `left` to everyone of the last
complete set or of any broken run's set who is not in the new one. The profile agent applies a
membership it already has as no change, and a run number not newer than the last it applied
not at all, so what is sent twice changes nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
from aiokafka import AIOKafkaProducer

from cjo.clock import Clock
from schemas.codec import AvroCodec
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


def prepare(db) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS audience_members (segment VARCHAR, "
               "profile_id VARCHAR)")
    db.execute("CREATE TABLE IF NOT EXISTS audience_pending (segment VARCHAR, "
               "profile_id VARCHAR)")
    # Everyone a run since the last complete one may have told `entered`.
    db.execute("CREATE TABLE IF NOT EXISTS audience_uncertain (segment VARCHAR, "
               "profile_id VARCHAR)")
    db.execute("CREATE TABLE IF NOT EXISTS audience_runs (segment VARCHAR PRIMARY KEY, "
               "run BIGINT, completed BOOLEAN, completed_at BIGINT)")


def _select(db, sql: str):
    """The audience's rows, from its SELECT run as written (not pasted into other SQL, so its
    comments and semicolons mean what they meant) in a transaction that is rolled back."""
    db.execute("BEGIN TRANSACTION")
    try:
        result = db.sql(sql)
        if "profile_id" not in result.columns:
            raise ValueError("an audience's SELECT must return a profile_id column")
        return result.to_arrow_table()
    finally:
        db.execute("ROLLBACK")


def compute(db, segment: Segment) -> AudienceRun:
    """Run the audience's SELECT and store its set as pending; return the changes to send."""
    sid = segment.id
    problem = read_only_select_problem(segment.sql)  # validated on apply: a second look
    if problem:
        raise ValueError(f"audience {sid}: {problem}")
    require_locked(db)
    db.register("audience_result", _select(db, segment.sql))
    previous = db.execute("SELECT run, completed FROM audience_runs WHERE segment = ?",
                          [sid]).fetchone()
    run = previous[0] + 1 if previous else 1
    broken = previous is not None and not previous[1]
    sure = ("SELECT profile_id FROM audience_members WHERE false AND segment = $sid" if broken else
            "SELECT profile_id FROM audience_members WHERE segment = $sid")
    maybe = ("SELECT profile_id FROM audience_members WHERE segment = $sid UNION "
             "SELECT profile_id FROM audience_uncertain WHERE segment = $sid")
    db.execute("BEGIN TRANSACTION")
    try:
        db.execute("CREATE OR REPLACE TEMP TABLE audience_new AS SELECT DISTINCT "
                   "CAST(profile_id AS VARCHAR) AS profile_id FROM audience_result "
                   "WHERE profile_id IS NOT NULL")
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
        db.execute("INSERT OR REPLACE INTO audience_runs VALUES (?, ?, false, NULL)",
                   [sid, run])
        db.execute("DROP TABLE audience_new")
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise
    finally:
        db.unregister("audience_result")
    return AudienceRun(sid, run, members, entered, left)


def complete(db, run: AudienceRun, at: int) -> None:
    """Every change of the run is acknowledged: its set becomes the audience's."""
    db.execute("BEGIN TRANSACTION")
    db.execute("DELETE FROM audience_members WHERE segment = ?", [run.segment])
    db.execute("INSERT INTO audience_members SELECT segment, profile_id FROM audience_pending "
               "WHERE segment = ?", [run.segment])
    db.execute("DELETE FROM audience_pending WHERE segment = ?", [run.segment])
    db.execute("DELETE FROM audience_uncertain WHERE segment = ?", [run.segment])
    db.execute("UPDATE audience_runs SET completed = true, completed_at = ? WHERE segment = ?",
               [at, run.segment])
    db.execute("COMMIT")


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
    codec = AvroCodec("profile_input", topic)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                enable_idempotence=True)
    await producer.start()
    done, failed = [], []
    try:
        for segment in audiences:
            now = Clock().now_ms()
            try:
                run = compute(db, segment)
            except (duckdb.Error, ValueError) as exc:  # the audience's SQL, not the sidecar
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
