"""The fault suite's short form (the full one: `python -m tests.faults`): each scenario on a few
thousand events; nothing may differ from the reference model, nothing may be lost, and every
duplicate must carry an id already seen."""
from __future__ import annotations

from tests.faults.suite import HEADER, broker_scenario, kill_scenario


def _check(report) -> None:
    print("\n" + HEADER + "\n" + report.line())
    assert report.ok, (report, report.examples)
    assert report.events > 0 and report.profiles > 50


def test_kill_9_at_random_moments_changes_nothing(settings, tmp_path):
    report = kill_scenario(settings, tmp_path, events=4000, kills=3, seed=11)
    _check(report)
    assert report.kills == 3 and report.restarts == 3
    assert report.duplicates > 0, "no kill caught the worker with uncommitted work"


def test_a_broker_restart_changes_nothing(settings, broker, tmp_path):
    _check(broker_scenario(settings, tmp_path, events=3000, broker=broker, seed=13))


# The takeover and lost-state scenarios are not in the short form: they find an open bug (issue
# 7's note). Around a rebalance (a takeover, or a restart with an empty RocksDB directory) the
# consumer sometimes stops committing an input partition while it processes everything after
# it (read lag 0; committed offset stuck behind a hole in Faust's acknowledged offsets), and once
# inputs were lost (10 profiles differed). topology.faust_fixes.CommitWatchdog re-reads such a
# partition; it has not been seen at work yet. Run them with
#     python -m tests.faults --events 4000 --only takeover lost-state
