"""Journey-stage sets and funnels, as SQL set operations over the sparse table.

For a journey version and a stage X, over the profiles that hold rows of that version (sets of
profile ids; docs/sidecar.md "Funnel columns" says each in words):
    entered(X)        = rows with key 'stage:X'
    left(X)           = rows with key 'stage:X' and last_left set   (its latest stay has ended)
    in_now(X)         = entered(X) EXCEPT left(X)
    milestone(X)      = rows with key 'milestone:X'
    exited_stage(X)   = rows with key 'exit:X:<n>'                  (X's own exit criteria)
    exited_journey(X) = rows with key 'exit:journey:<n>@X'          (the journey's, while in X)
    to_next(X)        = entered(X) INTERSECT entered(next stage)
    goal(X)           = entered(X) INTERSECT rows with key 'goal'
    time in X         = p50 / p90 over left(X) of last_left - last_reached of 'stage:X'
                        (each profile's latest stay in X; `first` where last_reached is null)

The sets of one journey version are computed over a temporary copy of its rows (`funnel_rows`),
so each set reads that version's rows, not the whole table. "Next" is the definition's stage
order; without one (a version no longer defined) stages are in id order and `to_next` is only
as good as that guess.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from sidecar.engines import engine_of, run
from sidecar.store import LIVE


@dataclass(frozen=True)
class StageCounts:
    journey: str
    version: int
    stage: str
    entered: int
    in_now: int
    milestone: int
    exited_stage: int
    exited_journey: int
    to_next: int
    goal: int
    # Time in the stage (ms): each profile's latest stay in it, from entering to leaving, over
    # the profiles whose latest stay has ended.
    p50_ms: float | None = None
    p90_ms: float | None = None
    # `exited_stage` under its name from before the split, for readers of the funnels file
    # written then (cjo/ops_cli.py, tests/integration/test_journeys.py).
    exited: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exited", self.exited_stage)

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
# The start of a stay: the latest time reached; rows written before it was kept have `first`.
REACHED = 'coalesce(last_reached, "first")'


def _rows(condition: str) -> str:
    return f"SELECT profile_id FROM {ROWS} WHERE {condition}"


def _starts(prefix: str) -> str:
    """key starts with `prefix` (no LIKE: `_` in a stage id is a LIKE wildcard)."""
    return f"substr(key, 1, {len(prefix)}) = {_lit(prefix)}"


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
        # Stage ids have no ':' or '@' (state.conditions.ID), so 'exit:X:' without '@' is X's
        # own; only a stage named 'journey' shares its keys with the journey's own exits.
        "exited_stage": _rows(f"{_starts('exit:' + stage + ':')} AND key NOT LIKE '%@%'"),
        "exited_journey": _rows(f"{_starts('exit:journey:')} "
                                f"AND split_part(key, '@', 2) = {_lit(stage)}"),
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


@contextmanager
def version_rows(db, journey: str, version: int):
    """The rows of one journey version as the temporary table `funnel_rows` (a read-only
    database has a writable temporary one), dropped afterwards."""
    have = {row[0] for row in db.execute(f"DESCRIBE {LIVE}").fetchall()}
    # A database written before `last_reached` and opened read-only was never given it.
    reached = "last_reached" if "last_reached" in have else "CAST(NULL AS BIGINT) AS last_reached"
    e = engine_of(db)
    run(db, e.temp_table(ROWS, f"SELECT profile_id, key, \"first\", last_left, {reached} "
                               f"FROM {LIVE} WHERE journey = ? AND version = ?"),
        [journey, version])
    try:
        yield ROWS
    finally:
        run(db, e.drop_temp(ROWS))


def funnel(db, journey: str, version: int, order: list[str] | None = None) -> list[StageCounts]:
    stages = stages_of(db, journey, version, order)
    if not stages:
        return []
    e = engine_of(db)
    stay = f"last_left - {REACHED}"
    with version_rows(db, journey, version):
        # Two statements per journey version (on Spark a statement is a job, so not one per
        # set): every set's count of every stage, and the stays' percentiles per stage.
        counts = {}
        parts = []
        for i, stage in enumerate(stages):
            following = stages[i + 1] if i + 1 < len(stages) else None
            for name, sql in stage_sets(stage, following).items():
                parts.append(f"SELECT {i} AS stage, {_lit(name)} AS name, count(*) AS n "
                             f"FROM ({sql}) s{len(parts)}")
        for i, name, n in db.execute(" UNION ALL ".join(parts)).fetchall():
            counts.setdefault(stages[i], {})[name] = n
        stays = {key[len("stage:"):]: (p50, p90) for key, p50, p90 in db.execute(
            f"SELECT key, {e.percentile(stay, 0.5)}, {e.percentile(stay, 0.9)} FROM {ROWS} "
            f"WHERE substr(key, 1, 6) = 'stage:' AND last_left IS NOT NULL GROUP BY key"
        ).fetchall()}
    return [StageCounts(journey, version, stage, **counts[stage],
                        p50_ms=stays.get(stage, (None, None))[0],
                        p90_ms=stays.get(stage, (None, None))[1]) for stage in stages]


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
