"""Batch audiences: a segment defined in SQL is computed by the sidecar over the archived events,
its changes (entered = new EXCEPT old, left = old EXCEPT new) go to the profiles' own
partitions, and the stream applies them in order with the profiles' events: a journey whose
entry criteria is the audience starts there, and only later events move it on."""
from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from cjo.clock import Clock
from state.definitions import DefinitionError
from tests.integration.harness import outputs, send_events, table, wait_processed
from tests.integration.test_journeys import START
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics

DEFINITIONS = """
segments:
  - id: big_spenders
    description: the five profiles with the highest purchase amounts
    sql: |
      SELECT profile_id FROM events
      WHERE name = 'purchase' AND field = 'amount'
      GROUP BY profile_id
      ORDER BY sum(v_double) DESC, profile_id
      LIMIT 5 -- a trailing comment
journeys:
  - id: vip
    entry: {segment: big_spenders}
    reentry: none
    stages:
      - id: welcomed
        steps:
          - {id: rest, kind: wait, duration: 300d, next: rest_end}
          - {id: rest_end, kind: end}
      - id: visiting
        entry: {event.name: {eq: visit}}
        steps:
          - {id: stay, kind: wait, duration: 300d, next: stay_end}
          - {id: stay_end, kind: end}
"""
PROFILES = [f"a{i:02d}" for i in range(20)]


def _event(pid, eid, name, t, **values):
    return (pid.encode(), {"event_id": eid, "name": name, "visitor_id": None, "user_id": pid,
                           "time": t, "request_id": None, "values": values})


def _top5(spent: dict[str, float]) -> set[str]:
    return set(sorted(spent, key=lambda p: (-spent[p], p))[:5])


def test_a_sql_audience_makes_profiles_enter_a_journey_in_order_with_their_events(
        settings, workers, tmp_path, monkeypatch):
    from sidecar.follower import follow

    clock = Clock(str(tmp_path / "clock"))
    clock.set(START + 3_600_000)
    monkeypatch.setenv("CJO_CLOCK_FILE", clock.path)  # the sidecar's runs are timed by it
    ensure_topics(settings)
    # An audience that reads a file is refused when applied (and would read nothing anyway).
    leak = "segments:\n  - id: leak\n    sql: SELECT content FROM read_text('/etc/passwd')\n"
    with pytest.raises(DefinitionError, match=r"read_text\(\) reads outside"):
        asyncio.run(apply_definitions(settings, leak))
    asyncio.run(apply_definitions(settings, DEFINITIONS))
    worker = workers(settings, extra_env={"CJO_CLOCK_FILE": clock.path})

    # Phase 1: purchases, then a visit (before anyone is in the journey: it moves nobody).
    spent = {pid: float((i * 7) % 20 + 1) for i, pid in enumerate(PROFILES)}
    log = [_event(p, f"buy1-{p}", "purchase", START + i, amount=spent[p])
           for i, p in enumerate(PROFILES)]
    log += [_event(p, f"visit1-{p}", "visit", START + 100 + i) for i, p in enumerate(PROFILES)]
    send_events(settings, log)
    wait_processed(settings, worker)
    first = asyncio.run(follow(settings, once=True))["audiences"]
    top1 = _top5(spent)
    assert first == [{"segment": "big_spenders", "run": 1, "members": 5, "entered": 5,
                      "left": 0}]
    wait_processed(settings, worker)

    # Phase 2: everyone visits; two others buy their way into the top five.
    climbers = ["a00", "a03"]
    assert not set(climbers) & top1
    log = [_event(p, f"visit2-{p}", "visit", START + 200 + i) for i, p in enumerate(PROFILES)]
    log += [_event(p, f"buy2-{p}", "purchase", START + 300 + i, amount=100.0)
            for i, p in enumerate(climbers)]
    for p in climbers:
        spent[p] += 100.0
    send_events(settings, log)
    wait_processed(settings, worker)
    clock.move(60_000)
    second = asyncio.run(follow(settings, once=True))["audiences"]
    top2 = _top5(spent)
    assert second == [{"segment": "big_spenders", "run": 2, "members": 5,
                       "entered": len(top2 - top1), "left": len(top1 - top2)}]
    wait_processed(settings, worker)
    # Nothing changed since: a third run sends nothing.
    third = asyncio.run(follow(settings, once=True))["audiences"]
    assert third == [{"segment": "big_spenders", "run": 3, "members": 5, "entered": 0,
                      "left": 0}]

    changes, _, _ = outputs(settings, "segment-changes", "segment_change", "change_id")
    by_run = defaultdict(set)
    for c in changes.values():
        if c["segment"] == "big_spenders":
            by_run[(c["change"], c["caused_by"].split(":")[2])].add(c["profile_id"])
    assert dict(by_run) == {("entered", "1"): top1, ("entered", "2"): top2 - top1,
                            ("left", "2"): top1 - top2}
    profiles = table(settings, "profiles", "profile")
    assert {p for p, s in profiles.items() if "big_spenders" in s["segments"]} == top2

    transitions, sequences, _ = outputs(settings, "journey-transitions", "journey_transition",
                                        "transition_id")
    entered = {t["profile_id"] for t in transitions.values() if t["kind"] == "entered_journey"}
    assert entered == top1 | top2  # no exit: those who left the audience stay in the journey
    for pid in top1 | top2:
        moves = [(transitions[tid]["kind"], transitions[tid]["to"], transitions[tid]["caused_by"])
                 for tid in sequences[pid]]
        assert moves[0][0] == "entered_journey" and moves[0][2].startswith("audience:")
        visiting = [m for m in moves if m[:2] == ("entered_stage", "visiting")]
        if pid in top1:
            # The first visit was applied before the audience: only the second moves it on.
            assert [m[2] for m in visiting] == [f"visit2-{pid}"], moves
        else:
            assert visiting == [], moves  # entered after its visits: still welcomed
            assert profiles[pid]["journeys"]["vip"]["stage"] == "welcomed"
