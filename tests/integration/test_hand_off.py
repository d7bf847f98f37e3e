"""The second hop without a fetch, on the real broker (topology.machinery.batches, "Our own
records without a fetch"): the profile inputs the worker writes to its own partitions are
applied once the broker acknowledges them, at their offsets, and what it makes is what the
reference model makes. Visitors' sessions with an identify in the middle come in rounds sent
back to back, so merges' hand-overs (written by the profile agent itself) and the timer's
wake-up checks interleave with them; `/stats/` counts the batches applied without a fetch."""
from __future__ import annotations

import time

from state.durations import MINUTE
from tests.integration.harness import (same_as_model, send_to_both, start_against_model,
                                       stats, table, wait_processed)
from tests.model import comparable

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFINITIONS = """
segments:
  - {id: anyone, condition: {count.*: {gte: 1}}}
  - {id: regulars, condition: {count.view: {gte: 3}}}
  - {id: buyers, condition: {count.purchase: {gte: 1}}}
deliveries:
  - {id: hello, segment: anyone, trigger: {event.name: {eq: view}}}
  - {id: thanks, segment: buyers, trigger: {event.name: {eq: purchase}}}
"""
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("activations", "activation", "activation_id"),
           ("identity-merges", "identity_merge", "merge_id"))
VISITORS = 24


def _event(key: str, event_id: str, name: str, t: int, visitor=None, user=None) -> tuple:
    return (key.encode(), {"event_id": event_id, "name": name, "visitor_id": visitor,
                           "user_id": user, "time": t, "request_id": None, "values": {}})


def _round(n: int) -> list:
    """Each visitor views twice, is identified (as a member of its own), views and buys, all
    under the visitor's key: ordered with its merge (README, "Merges before what follows
    them"). Visitors' events interleave."""
    log = []
    for step, (name, user) in enumerate([("view", None), ("view", None), ("identify", "m"),
                                         ("view", "m"), ("purchase", "m")]):
        for i in range(VISITORS):
            visitor = f"v{n}-{i}"
            log.append(_event(visitor, f"{visitor}-{step}", name,
                              START + n * MINUTE + step * 1000 + i, visitor=visitor,
                              user=f"m{n}-{i}" if user else None))
    return log


def test_own_profile_inputs_are_applied_without_a_fetch_and_make_the_models_outputs(
        settings, workers, tmp_path):
    clock, model, worker = start_against_model(settings, workers, tmp_path, DEFINITIONS, START)
    for n in range(4):
        send_to_both(settings, model, _round(n))  # no pause between rounds
    wait_processed(settings, worker)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not same_as_model(settings, model, OUTPUTS):
        time.sleep(0.3)
    assert same_as_model(settings, model, OUTPUTS)
    states = table(settings, "profiles", "profile")
    assert {pid: comparable(p) for pid, p in states.items()} == model.states()
    assert stats(settings, worker)["hand_offs"] > 0
