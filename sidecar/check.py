"""The sampled consistency check (Treasure Data's): on a Bernoulli sample of profiles, count the
rows of the sparse table that break a journey invariant (each invariant is one SELECT of the
(profile, journey, version) that break it), and compare the stream's segment memberships with
the same segments recomputed in SQL from the archived events (`state.sql`), both at the
snapshots' offsets.

The recount covers the sampled profiles that have archived events and no merge (a merge folds
state into state, which no replay of one history reproduces exactly; see `state.sql`), and the
segments the stream evaluates (SQL-defined audiences are set by the sidecar, not judged)."""
from __future__ import annotations

from dataclasses import dataclass, field

from typing import Mapping

from sidecar.engines import engine_of, run
from sidecar.store import LIVE
from state.conditions import Condition
from state.sparse import JUDGED_KEY
from state.sql import compile_segment, last_applied_profiles


# The invariants read the rows of the sampled profiles only, so a smaller sample costs less.
ROWS = "check_rows"

_PAIR = f"""SELECT s.profile_id, s.journey, s.version FROM {ROWS} s JOIN {ROWS} o
    ON s.profile_id = o.profile_id AND s.journey = o.journey AND s.version = o.version"""

INVARIANTS = {
    # A stage reached before the journey was entered (or with no journey entry at all).
    "stage_before_journey": f"""SELECT s.profile_id, s.journey, s.version FROM {ROWS} s
        WHERE s.key LIKE 'stage:%' AND NOT EXISTS (SELECT 1 FROM {ROWS} o
            WHERE o.profile_id = s.profile_id AND o.journey = s.journey
            AND o.version = s.version AND o.key = 'journey' AND o."first" <= s."first")""",
    # A stage first reached after the goal, in the current run (the `position` row's `first`
    # is when the run began): a later run (re-entry `always`) may well reach new stages.
    "stage_after_goal": f"""{_PAIR} JOIN {ROWS} r ON r.profile_id = s.profile_id
        AND r.journey = s.journey AND r.version = s.version AND r.key = 'position'
        WHERE s.key LIKE 'stage:%' AND o.key = 'goal' AND s."first" > o."first"
        AND o."first" >= r."first"
        """,
    "exit_without_entry": f"""SELECT profile_id, journey, version FROM {ROWS} WHERE key LIKE 'exit:%'
        EXCEPT SELECT profile_id, journey, version FROM {ROWS} WHERE key = 'journey'""",
    # An exit from a stage the profile never entered: X's own (`exit:X:<n>`) or the journey's
    # while in X (`exit:journey:<n>@X`). (`exit:journey:<n>` alone is the journey's: a stage
    # named 'journey' shares that key, so it is not checked.)
    "exit_from_unentered_stage": f"""SELECT e.profile_id, e.journey, e.version FROM (
            SELECT profile_id, journey, version, CASE WHEN key LIKE '%@%'
                THEN split_part(key, '@', 2) ELSE split_part(key, ':', 2) END AS stage
            FROM {ROWS} WHERE key LIKE 'exit:%'
            AND (key LIKE '%@%' OR split_part(key, ':', 2) <> 'journey')) e
        WHERE NOT EXISTS (SELECT 1 FROM {ROWS} o WHERE o.profile_id = e.profile_id
            AND o.journey = e.journey AND o.version = e.version AND o.key = 'stage:' || e.stage)""",
    "two_stages_at_once": f"""SELECT profile_id, journey, version FROM {ROWS}
        WHERE key LIKE 'stage:%' AND last_left IS NULL
        GROUP BY profile_id, journey, version HAVING count(*) > 1""",
    # A stay left before it began, or reached last before it was reached first.
    "left_before_reached": f"""SELECT profile_id, journey, version FROM {ROWS}
        WHERE last_left < "first" OR last_left < last_reached
        OR last_reached < "first" """,
}


@dataclass
class CheckReport:
    percent: float
    sampled_profiles: int
    recounted_profiles: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


def check(db, percent: float = 50.0, seed: int | None = None,
          segments: Mapping[str, Condition] | None = None) -> CheckReport:
    """Check a sample of `percent` % of the profiles; with `segments` (id → condition of the
    segments the stream judges), also recount their memberships from the archive."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    e = engine_of(db)
    # Sample profiles, not rows: every row of a sampled profile is checked. All of them at
    # 100% (no sampling clause: Spark's sampler is not asked to keep every row).
    sample = e.sample(percent, seed) if percent < 100 else ""
    run(db, e.temp_table("check_profiles", f"SELECT profile_id FROM (SELECT profile_id FROM "
                                           f"{LIVE} UNION SELECT profile_id FROM "
                                           f"snapshot_profiles) {sample}"))
    report = CheckReport(percent, db.execute("SELECT count(*) FROM check_profiles").fetchone()[0])
    run(db, e.temp_table(ROWS, f"SELECT * FROM {LIVE} "
                               f"WHERE profile_id IN (SELECT profile_id FROM check_profiles)"))
    for name, sql in INVARIANTS.items():
        rows = db.execute(f"SELECT DISTINCT profile_id FROM ({sql}) ORDER BY 1").fetchall()
        report.violations[name] = len(rows)
        report.examples[name] = [r[0] for r in rows[:5]]
    if segments:
        _recount_segments(db, segments, report)
    return report


def _recount_segments(db, segments: Mapping[str, Condition], report: CheckReport) -> None:
    e = engine_of(db)
    # The archived events of the unmerged sampled profiles, up to each snapshot's offset.
    run(db, e.temp_table("check_archived", """SELECT e.* FROM events e
        JOIN partition_offsets o ON e.input_partition = o."partition"
        WHERE e.input_offset < o."offset" AND e.profile_id IN (
            SELECT profile_id FROM check_profiles EXCEPT
            SELECT profile_id FROM snapshot_profiles WHERE merged)"""))
    # Of those, the ones the profile applied. An event the identity step forwarded twice (read
    # again after a crash or a rebalance before its commit) is archived twice, at two offsets,
    # with one source (its position in the events topic); the profile skips an input whose
    # source offset is not past the last one it applied from that source partition
    # (`positions`, state.processing), so a copy counts once here too. Rows archived before the
    # source columns have none: they all count.
    run(db, e.temp_table("check_events", """SELECT a.* FROM check_archived a JOIN (
            SELECT profile_id, seq FROM (SELECT profile_id, seq, source_offset,
                max(source_offset) OVER (PARTITION BY profile_id, source_partition ORDER BY seq
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS applied_before
                FROM check_archived WHERE field IS NULL) x
            WHERE source_offset IS NULL OR applied_before IS NULL
                OR source_offset > applied_before) k
        ON k.profile_id = a.profile_id AND k.seq = a.seq"""))
    run(db, e.drop_temp("check_archived"))
    db.execute(f"""CREATE OR REPLACE TEMPORARY VIEW check_memberships AS SELECT profile_id,
        substr(key, 9) AS segment FROM {ROWS} WHERE key LIKE 'segment:%'""")
    run(db, e.temp_table("check_recounted", "SELECT DISTINCT profile_id FROM check_events"))
    report.recounted_profiles = db.execute(
        "SELECT count(*) FROM check_recounted").fetchone()[0]
    # `now` of the recount: when the stream judged the profile last, the time of its last
    # archived event unless a time-driven change (a wake-up after it) was judged later.
    judged_at = (f"SELECT a.profile_id, coalesce(j.\"first\", a.as_of) AS as_of FROM ("
                 f"{last_applied_profiles('check_events', e.dialect)}) a LEFT JOIN (SELECT "
                 f"profile_id, \"first\" FROM {ROWS} WHERE key = {e.dialect.string(JUDGED_KEY)}"
                 f") j ON j.profile_id = a.profile_id")
    # One statement for every segment (on Spark a statement is a job: one, not one a segment).
    parts = []
    for sid, condition in sorted(segments.items()):
        recount = compile_segment(condition, events_table="check_events", segments=segments,
                                  memberships="check_memberships", dialect=e.dialect,
                                  profiles_sql=judged_at)
        stream = (f"SELECT profile_id FROM {ROWS} WHERE key = "
                  f"{e.dialect.string('segment:' + sid)} "
                  f"AND profile_id IN (SELECT profile_id FROM check_recounted)")
        parts.append(f"SELECT {e.dialect.string(sid)} AS segment, profile_id FROM ("
                     f"(({stream}) EXCEPT ({recount})) UNION "
                     f"(({recount}) EXCEPT ({stream}))) d{len(parts)}")
    wrong = [(pid, sid) for sid, pid in db.execute(
        " UNION ALL ".join(parts) + " ORDER BY segment, profile_id").fetchall()]
    report.violations["segment_membership"] = len({pid for pid, _ in wrong})
    report.examples["segment_membership"] = [f"{pid} ({sid})" for pid, sid in wrong[:5]]
