"""The sampled consistency check (Treasure Data's): on a Bernoulli sample of profiles, count the
rows of the sparse table that break a journey invariant. Each invariant is one SELECT of the
(profile, journey, version) that break it."""
from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.store import LIVE

# The sampling clause is the one engine-specific part: DuckDB and Trino spell it alike but for
# the PERCENT keyword; Spark SQL takes `TABLESAMPLE (p PERCENT)`.
SAMPLE = {
    "duckdb": "TABLESAMPLE BERNOULLI ({p} PERCENT)",
    "trino": "TABLESAMPLE BERNOULLI ({p})",
    "spark": "TABLESAMPLE ({p} PERCENT)",
}

_PAIR = f"""SELECT s.profile_id, s.journey, s.version FROM {LIVE} s JOIN {LIVE} o
    ON s.profile_id = o.profile_id AND s.journey = o.journey AND s.version = o.version"""

INVARIANTS = {
    # A stage reached before the journey was entered (or with no journey entry at all).
    "stage_before_journey": f"""SELECT s.profile_id, s.journey, s.version FROM {LIVE} s
        WHERE s.key LIKE 'stage:%' AND NOT EXISTS (SELECT 1 FROM {LIVE} o
            WHERE o.profile_id = s.profile_id AND o.journey = s.journey
            AND o.version = s.version AND o.key = 'journey' AND o."first" <= s."first")""",
    "stage_after_goal": f"{_PAIR} WHERE s.key LIKE 'stage:%' AND o.key = 'goal' "
                        "AND s.\"first\" > o.\"first\"",
    "exit_without_entry": f"""SELECT profile_id, journey, version FROM {LIVE} WHERE key LIKE 'exit:%'
        EXCEPT SELECT profile_id, journey, version FROM {LIVE} WHERE key = 'journey'""",
    "two_stages_at_once": f"""SELECT profile_id, journey, version FROM {LIVE}
        WHERE key LIKE 'stage:%' AND last_left IS NULL
        GROUP BY profile_id, journey, version HAVING count(*) > 1""",
    "left_before_reached": f"SELECT profile_id, journey, version FROM {LIVE} "
                           "WHERE last_left < \"first\"",
}


@dataclass
class CheckReport:
    percent: float
    sampled_profiles: int
    violations: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


def check(db, percent: float = 50.0, engine: str = "duckdb", seed: int | None = None) -> CheckReport:
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    sample = SAMPLE[engine].format(p=percent)
    # Sample profiles, not rows: every row of a sampled profile is checked.
    db.execute(f"CREATE OR REPLACE TEMP TABLE check_profiles AS SELECT profile_id FROM "
               f"(SELECT DISTINCT profile_id FROM {LIVE}) {sample}"
               + (f" REPEATABLE ({int(seed)})" if seed is not None else ""))
    report = CheckReport(percent, db.execute("SELECT count(*) FROM check_profiles").fetchone()[0])
    for name, sql in INVARIANTS.items():
        rows = db.execute(f"SELECT DISTINCT v.profile_id FROM ({sql}) v "
                          f"WHERE v.profile_id IN (SELECT profile_id FROM check_profiles) "
                          f"ORDER BY 1").fetchall()
        report.violations[name] = len(rows)
        report.examples[name] = [r[0] for r in rows[:5]]
    return report
