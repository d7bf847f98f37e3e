"""Journey-stage sets and funnels, as SQL set operations over the sparse table.

For a journey version and a stage X (sets of profile ids):
    entered(X)   = rows with key 'stage:X'
    in_now(X)    = entered(X) EXCEPT left(X)             (left: 'stage:X' with last_left set)
    milestone(X) = rows with key 'milestone:X'
    exited(X)    = rows with key 'exit:X:<n>'
    to_next(X)   = entered(X) INTERSECT entered(next stage)
    goal(X)      = entered(X) INTERSECT rows with key 'goal'

The sets of one journey version are computed over a temporary copy of its rows (`funnel_rows`),
so each set reads that version's rows, not the whole table. "Next" is the definition's stage
order; without one (a version no longer defined) stages are in id order and `to_next` is only
as good as that guess.
"""
from __future__ import annotations

from dataclasses import dataclass

from sidecar.store import DUCKDB, LIVE


@dataclass(frozen=True)
class StageCounts:
    journey: str
    version: int
    stage: str
    entered: int
    in_now: int
    milestone: int
    exited: int
    to_next: int
    goal: int
    # Time in the stage (ms, from first reached to last left) of the profiles that left it.
    p50_ms: float | None = None
    p90_ms: float | None = None

    @property
    def conversion(self) -> float | None:
        """The share of the stage's profiles that went on to the next stage."""
        return self.to_next / self.entered if self.entered else None


@dataclass(frozen=True)
class StepCount:
    journey: str
    version: int
    stage: str
    step: str
    profiles: int  # in the step now


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


ROWS = "funnel_rows"


def _rows(condition: str) -> str:
    return f"SELECT profile_id FROM {ROWS} WHERE {condition}"


def stage_sets(stage: str, next_stage: str | None) -> dict[str, str]:
    """The SQL of each set for one stage (each a SELECT of profile ids from `funnel_rows`,
    the rows of one journey version)."""
    entered = _rows(f"key = {_lit('stage:' + stage)}")
    left = _rows(f"key = {_lit('stage:' + stage)} AND last_left IS NOT NULL")
    goal = _rows("key = 'goal'")
    following = _rows(f"key = {_lit('stage:' + next_stage)}") if next_stage else None
    return {
        "entered": entered,
        "in_now": f"({entered}) EXCEPT ({left})",
        "milestone": _rows(f"key = {_lit('milestone:' + stage)}"),
        "exited": _rows(f"starts_with(key, {_lit('exit:' + stage + ':')})"),
        "to_next": f"({entered}) INTERSECT ({following})" if following else _rows("false"),
        "goal": f"({entered}) INTERSECT ({goal})",
    }


def stages_of(db, journey: str, version: int, order: list[str] | None = None) -> list[str]:
    found = [r[0] for r in db.execute(
        f"SELECT DISTINCT substr(key, 7) FROM {LIVE} WHERE journey = ? AND version = ? "
        f"AND key LIKE 'stage:%'", [journey, version]).fetchall()]
    if order:
        return [s for s in order if s in found] + sorted(set(found) - set(order))
    return sorted(found)


def funnel(db, journey: str, version: int, order: list[str] | None = None) -> list[StageCounts]:
    stages = stages_of(db, journey, version, order)
    db.execute(f"CREATE OR REPLACE TEMP TABLE {ROWS} AS SELECT profile_id, key, \"first\", last_left "
               f"FROM {LIVE} WHERE journey = ? AND version = ?", [journey, version])
    out = []
    try:
        for i, stage in enumerate(stages):
            following = stages[i + 1] if i + 1 < len(stages) else None
            counts = {name: db.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
                      for name, sql in stage_sets(stage, following).items()}
            stay = 'last_left - "first"'
            p50, p90 = db.execute(
                f"SELECT {DUCKDB.percentile(stay, 0.5)}, {DUCKDB.percentile(stay, 0.9)} "
                f"FROM {ROWS} WHERE key = ? AND last_left IS NOT NULL",
                [f"stage:{stage}"]).fetchone()
            out.append(StageCounts(journey, version, stage, **counts, p50_ms=p50, p90_ms=p90))
    finally:
        db.execute(f"DROP TABLE {ROWS}")
    return out


def steps(db, journey: str, version: int) -> list[StepCount]:
    """How many profiles are in each step now (the `position` rows of active profiles)."""
    rows = db.execute(
        f"SELECT split_part(value, '/', 1), split_part(value, '/', 2), count(*) FROM {LIVE} "
        f"WHERE journey = ? AND version = ? AND key = 'position' AND contains(value, '/') "
        f"GROUP BY 1, 2 ORDER BY 1, 2", [journey, version]).fetchall()
    return [StepCount(journey, version, stage, step, n) for stage, step, n in rows]


def journeys(db) -> list[tuple[str, int]]:
    return [tuple(r) for r in db.execute(
        f"SELECT DISTINCT journey, version FROM {LIVE} WHERE journey IS NOT NULL "
        f"ORDER BY 1, 2").fetchall()]
