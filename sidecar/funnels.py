"""Journey-stage sets and funnels, as SQL set operations over the sparse table.

For a journey version and a stage X (sets of profile ids):
    entered(X)   = rows with key 'stage:X'
    in_now(X)    = entered(X) EXCEPT left(X)             (left: 'stage:X' with last_left set)
    milestone(X) = rows with key 'milestone:X'
    exited(X)    = rows with key 'exit:X:<n>'
    to_next(X)   = entered(X) INTERSECT entered(next stage)
    goal(X)      = entered(X) INTERSECT rows with key 'goal'
"""
from __future__ import annotations

from dataclasses import dataclass

from sidecar.store import LIVE


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


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _rows(condition: str) -> str:
    return (f"SELECT profile_id FROM {LIVE} WHERE journey = $journey AND version = $version "
            f"AND {condition}")


def stage_sets(stage: str, next_stage: str | None) -> dict[str, str]:
    """The SQL of each set for one stage (each a SELECT of profile ids; parameters $journey
    and $version)."""
    entered = _rows(f"key = {_lit('stage:' + stage)}")
    left = _rows(f"key = {_lit('stage:' + stage)} AND last_left IS NOT NULL")
    goal = _rows("key = 'goal'")
    following = _rows(f"key = {_lit('stage:' + next_stage)}") if next_stage else None
    return {
        "entered": entered,
        "in_now": f"({entered}) EXCEPT ({left})",
        "milestone": _rows(f"key = {_lit('milestone:' + stage)}"),
        "exited": _rows(f"key LIKE {_lit('exit:' + stage + ':%')}"),
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
    out = []
    for i, stage in enumerate(stages):
        following = stages[i + 1] if i + 1 < len(stages) else None
        sets = stage_sets(stage, following)
        counts = {name: db.execute(f"SELECT count(*) FROM ({sql})",
                                   {"journey": journey, "version": version}).fetchone()[0]
                  for name, sql in sets.items()}
        out.append(StageCounts(journey, version, stage, **counts))
    return out


def journeys(db) -> list[tuple[str, int]]:
    return [tuple(r) for r in db.execute(
        f"SELECT DISTINCT journey, version FROM {LIVE} WHERE journey IS NOT NULL "
        f"ORDER BY 1, 2").fetchall()]
