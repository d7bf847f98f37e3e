"""The fault suite's short form (the full one: `python -m tests.faults`): each scenario on a few
thousand events; nothing may differ from the reference model, nothing may be lost, and every
duplicate must carry an id already seen."""
from __future__ import annotations

from tests.conftest import free_port
from tests.faults.suite import HEADER, broker_scenario, kill_scenario, takeover_scenario


def _check(report) -> None:
    print("\n" + HEADER + "\n" + report.line())
    assert report.ok, (report, report.examples)
    assert report.events > 0 and report.profiles > 50


def test_kill_9_at_random_moments_changes_nothing(settings, tmp_path):
    report = kill_scenario(settings, tmp_path, events=4000, kills=3, seed=11)
    _check(report)
    assert report.kills == 3 and report.restarts == 3
    assert report.duplicates > 0, "no kill caught the worker with uncommitted work"


def test_a_takeover_by_a_standby_and_back_changes_nothing(settings, tmp_path):
    settings = settings.with_(web_port=free_port())
    _check(takeover_scenario(settings, tmp_path, events=4000, seed=12))


def test_a_broker_restart_changes_nothing(settings, broker, tmp_path):
    _check(broker_scenario(settings, tmp_path, events=3000, broker=broker, seed=13))


# The lost-state scenario is not in the short form: it finds an open bug (issue 7's note). After
# a worker restarts with an empty RocksDB directory, the consumer sometimes stops committing an
# input partition while it processes everything after it (read lag 0, committed offset stuck),
# and once it lost inputs (10 profiles differed). Run it with
#     python -m tests.faults --events 3000 --only lost-state lost-state lost-state
