"""The fault suite's short form (the full one: `python -m tests.faults`): each scenario on a few
thousand events; nothing may differ from the reference model, nothing may be lost, and every
duplicate must carry an id already seen (in `calm`, which makes no fault, there must be none)."""
from __future__ import annotations

from tests.faults.suite import (HEADER, broker_kill_scenario, broker_scenario,
                                calm_scenario, definitions_scenario, kill_scenario,
                                lost_state_scenario, scale_scenario, stall_scenario,
                                takeover_scenario)


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


def test_a_kill_9_of_the_broker_changes_nothing(settings, broker, tmp_path):
    _check(broker_kill_scenario(settings, tmp_path, events=3000, broker=broker, seed=16))


def test_definitions_changed_mid_run_and_a_kill_under_them_change_nothing(settings, tmp_path):
    report = definitions_scenario(settings, tmp_path, events=3000, seed=17)
    _check(report)
    assert report.kills == 1


def test_a_takeover_by_a_standby_and_back_changes_nothing(settings, tmp_path):
    """Two workers with standby replicas; one is killed (the other takes every partition) and
    restarted later (partitions move back). A commit held up behind a hole in Faust's
    acknowledged offsets is re-read by the commit watchdog (topology.machinery.faust_fixes)."""
    _check(takeover_scenario(settings, tmp_path, events=4000, seed=12))


def test_a_worker_that_lost_its_rocksdb_rebuilds_it_and_changes_nothing(settings, tmp_path):
    _check(lost_state_scenario(settings, tmp_path, events=3000, seed=14))


def test_a_worker_that_stands_still_past_its_session_timeout_changes_nothing(settings, tmp_path):
    """Each of two workers (standby replicas) in turn is stopped (SIGSTOP) past the session
    timeout mid-round and then goes on: the other takes its partitions, and the one that stood
    still writes nothing more once its membership may have expired."""
    report = stall_scenario(settings, tmp_path, events=4000, stalls=2, seed=15)
    _check(report)
    assert report.kills == 2 and report.wakeups > 0


def test_with_no_fault_every_output_is_sent_exactly_once(settings, tmp_path):
    """One worker, no fault, the clock moving day by day: a wake-up that arrives after the
    profile's events moved it on, or any other input, sends nothing twice (issue 19)."""
    report = calm_scenario(settings, tmp_path, events=3000, seed=19)
    _check(report)
    assert (report.mismatches, report.lost, report.extra, report.duplicates) == (0, 0, 0, 0)
    assert report.kills == 0 and report.restarts == 0 and report.wakeups > 0


def test_workers_joining_leaving_and_killed_on_six_partitions_change_nothing(settings, tmp_path):
    """Three workers with standby replicas on six partitions: two join mid-round, one leaves by a
    clean stop mid-round, one is killed and restarted; a worker taking over a partition from its
    standby role holds every profile (its changelog records were all read), and the sidecar
    folding every worker's snapshots recounts every profile without a violation."""
    report = scale_scenario(settings, tmp_path, events=4000, seed=3)
    _check(report)
    assert report.kills == 2 and report.restarts >= 3
