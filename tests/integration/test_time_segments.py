"""Segments that follow the clock, end to end (issue 20): with no event at all, profiles leave a
`since.add_to_cart < 2d` segment and enter a `since.last_seen > 3d` one as the worker's clock
passes each profile's moment; a journey whose entry is the second segment is entered then; the
stream equals the reference model at every step, and the sidecar's recount agrees with each
snapshot."""
from __future__ import annotations

import time

from state.durations import DAY, HOUR, MINUTE
from tests.integration.harness import (outputs, send_to_both, start_against_model, stats, table,
                                       wait_processed)
from tests.integration.test_snapshots import wait_for_snapshots
from tests.model import ReferenceModel, comparable

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFINITIONS = """
segments:
  - {id: cart_recent, condition: {all: [{count.add_to_cart: {gte: 1}},
                                        {since.add_to_cart: {lt: 2d}}]}}
  - {id: lapsed, condition: {since.last_seen: {gt: 3d}}}
  - {id: busy, condition: {count.view: {gte: 2, within: 1d}}}
journeys:
  - id: winback
    entry: {segment: lapsed}
    reentry: none
    stages:
      - id: ask
        steps:
          - {id: mail, kind: activation, destination: email, payload: {template: miss-you}, next: done}
          - {id: done, kind: end}
"""
PROFILES = 60
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("journey-transitions", "journey_transition", "transition_id"),
           ("activations", "activation", "activation_id"))


def _events() -> list:
    """Each profile views twice and puts something in its cart, a few minutes apart; profile
    i starts i*20 minutes after START, so their moments spread over the day."""
    log = []
    for i in range(PROFILES):
        pid = f"t{i:03d}"
        t = START + i * 20 * MINUTE
        for n, name in enumerate(("view", "view", "add_to_cart")):
            log.append((pid.encode(), {"event_id": f"{pid}-{n}", "name": name,
                                       "visitor_id": pid, "user_id": None,
                                       "time": t + n * MINUTE, "request_id": None,
                                       "values": {}}))
    return log


def _segment_sizes(settings) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for p in table(settings, "profiles", "profile").values():
        for s in p["segments"]:
            sizes[s] = sizes.get(s, 0) + 1
    return sizes


def test_segments_change_as_the_clock_passes_with_no_event(settings, workers, tmp_path):
    from sidecar.follower import check_report

    settings = settings.with_(commit_interval=0.5, snapshot_interval=1.0,
                              snapshot_dir=str(tmp_path / "snapshots"))
    clock, model, worker = start_against_model(settings, workers, tmp_path, DEFINITIONS, START)
    log = _events()
    send_to_both(settings, model, log)
    clock.set(max(e["time"] for _, e in log))
    model.wake_until(clock.now_ms())
    wait_processed(settings, worker)

    delays = []
    # Steps of the clock, no events: `busy` ends a day after each profile's views, cart_recent
    # two days after its cart, `lapsed` (and the journey) begins three days after its last event.
    for step_to in (START + DAY + 6 * HOUR, START + 2 * DAY + 10 * HOUR, START + 3 * DAY,
                    START + 3 * DAY + 12 * HOUR, START + 3 * DAY + 23 * HOUR, START + 5 * DAY):
        woken = model.wake_until(step_to)
        expected = {s: n for s, n in _sizes(model).items() if n}
        moved = time.monotonic()
        clock.set(step_to)
        deadline = moved + 60
        while time.monotonic() < deadline and _segment_sizes(settings) != expected:
            time.sleep(0.1)
        delays.append(time.monotonic() - moved)
        assert _segment_sizes(settings) == expected, (step_to, woken)
        wait_processed(settings, worker)
        # Every step's snapshot, recounted in SQL at each profile's moment, agrees.
        wait_for_snapshots(settings)
        report = check_report(settings, 100.0)
        assert report.ok and report.recounted_profiles == PROFILES, report

    print("seconds from the clock's move to the segments' change, per step:",
          [round(d, 2) for d in delays])
    states = table(settings, "profiles", "profile")
    assert {pid: comparable(p) for pid, p in states.items()} == model.states()
    for topic, schema, id_field in OUTPUTS:
        by_id, _, duplicates = outputs(settings, topic, schema, id_field)
        assert by_id == {r[id_field]: r for r in model.outputs[topic]}, topic
    changes, _, _ = outputs(settings, "segment-changes", "segment_change", "change_id")
    by_time = [c for c in changes.values() if c["caused_by"].startswith("time:")]
    assert {(c["segment"], c["change"]) for c in by_time} == {
        ("busy", "left"), ("cart_recent", "left"), ("lapsed", "entered")}
    assert len(by_time) == 3 * PROFILES
    mails = outputs(settings, "activations", "activation", "activation_id")[0]
    assert len(mails) == PROFILES  # the journey on `lapsed` was entered, by time alone
    assert stats(settings, worker)["wakeups_applied"] >= 3 * PROFILES


def _sizes(model: ReferenceModel) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for p in model.profiles.values():
        for s in p["segments"]:
            sizes[s] = sizes.get(s, 0) + 1
    return sizes
