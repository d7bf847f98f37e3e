"""A worker with nothing to do fetches rarely (topology.machinery.fetch_pacing) and applies the
first events after a quiet spell like any others, on the real broker: after a second without
records `/stats/` shows its fetches waiting up to 500 ms and ending at the first record; the
events then sent, quiet spells between them, make what the reference model makes."""
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
  - {id: regulars, condition: {count.view: {gte: 2}}}
deliveries:
  - {id: hello, segment: anyone, trigger: {event.name: {eq: view}}}
"""
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("activations", "activation", "activation_id"))


def _views(round_: int) -> list:
    return [(f"u{i}".encode(), {"event_id": f"u{i}-{round_}", "name": "view", "visitor_id": None,
                                "user_id": f"u{i}", "time": START + round_ * MINUTE + i,
                                "request_id": None, "values": {}}) for i in range(8)]


def _until_idle(settings, worker, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fetch = stats(settings, worker).get("fetch")
        if fetch and fetch["idle"]:
            return fetch
        time.sleep(0.2)
    raise AssertionError(f"the worker never went idle: {stats(settings, worker).get('fetch')}")


def test_an_idle_worker_waits_long_per_fetch_and_applies_what_comes_next(settings, workers,
                                                                          tmp_path):
    clock, model, worker = start_against_model(settings, workers, tmp_path, DEFINITIONS, START)
    spells = []
    for round_ in range(3):
        fetch = _until_idle(settings, worker)
        assert (fetch["wait_ms"], fetch["min_bytes"]) == (500, 1)
        spells.append(fetch["idle_spells"])
        send_to_both(settings, model, _views(round_))
        wait_processed(settings, worker)
    assert spells == sorted(set(spells)), "each round came after a quiet spell of its own"

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not same_as_model(settings, model, OUTPUTS):
        time.sleep(0.3)
    assert same_as_model(settings, model, OUTPUTS)
    states = table(settings, "profiles", "profile")
    assert {pid: comparable(p) for pid, p in states.items()} == model.states()
    assert {pid: p["counts"] for pid, p in states.items()} == {f"u{i}": {"view": 3}
                                                               for i in range(8)}
