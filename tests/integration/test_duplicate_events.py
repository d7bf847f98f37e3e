"""A producer's re-sends against the real broker (issue 19, part 2): every event is sent twice
back to back (the same `event_id`, at two offsets), a visitor's event is sent again after
its identify, and the worker applies each once: its outputs, the profiles and the count of
dropped duplicates in `/stats/` are the reference model's, which applies every event once."""
from __future__ import annotations

import time

from state.durations import MINUTE
from tests.integration.harness import (outputs, same_as_model, send_to_both,
                                       start_against_model, stats, table, wait_processed)
from tests.model import comparable

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFINITIONS = """
segments:
  - {id: anyone, condition: {count.*: {gte: 1}}}
  - {id: fans, condition: {count.view: {gte: 3}}}
deliveries:
  - {id: ping, segment: anyone, trigger: {event.name: {eq: view}}}
"""
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("activations", "activation", "activation_id"))
MEMBERS = 6


def _event(key: str, event_id: str, name: str, t: int, visitor=None, user=None) -> tuple:
    return (key.encode(), {"event_id": event_id, "name": name, "visitor_id": visitor,
                           "user_id": user, "time": t, "request_id": None, "values": {}})


def _logs() -> tuple[list, list, int]:
    """Members view four times, every view sent twice in a row; then a visitor views twice, is
    identified as u000, and its first view is sent again under its own key after that. Returns
    the two logs and how many of their events are re-sends. The second is sent once the first
    is applied: events under the member's own key are ordered with a merge only by arrival
    (README, "Merges before what follows them"), so u000's views must be its history before
    the identify is sent for the comparison with the model to be exact."""
    members, resent = [], 0
    for n in range(4):
        for i in range(MEMBERS):
            pid = f"u{i:03d}"
            e = _event(pid, f"{pid}-view-{n}", "view", START + n * MINUTE + i, user=pid)
            members += [e, e]
            resent += 1
    first = _event("v1", "v1-view-0", "view", START + 10 * MINUTE, visitor="v1")
    visitor = [first, _event("v1", "v1-view-1", "view", START + 11 * MINUTE, visitor="v1"),
               _event("v1", "v1-identify", "identify", START + 12 * MINUTE, visitor="v1",
                      user="u000"),
               first]
    return members, visitor, resent + 1


def test_re_sent_events_are_applied_once_and_counted(settings, workers, tmp_path):
    clock, model, worker = start_against_model(settings, workers, tmp_path, DEFINITIONS, START)
    members, visitor, resent = _logs()
    send_to_both(settings, model, members)
    wait_processed(settings, worker)
    send_to_both(settings, model, visitor)
    wait_processed(settings, worker)
    assert model.duplicates == resent

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not same_as_model(settings, model, OUTPUTS):
        time.sleep(0.3)
    assert same_as_model(settings, model, OUTPUTS)
    activations, _, copies = outputs(settings, "activations", "activation", "activation_id")
    assert copies == 0
    # One ping per distinct view: 4 per member, the visitor's two.
    assert len(activations) == 4 * MEMBERS + 2
    states = table(settings, "profiles", "profile")
    assert {pid: comparable(p) for pid, p in states.items()} == model.states()
    assert states["u001"]["counts"] == {"view": 4}
    assert states["u000"]["counts"] == {"view": 6, "identify": 1}
    assert sum(p["duplicates"] for p in states.values()) == resent
    while time.monotonic() < deadline and \
            stats(settings, worker).get("duplicate_events", 0) < resent:
        time.sleep(0.3)
    assert stats(settings, worker)["duplicate_events"] == resent
