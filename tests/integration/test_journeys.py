"""Journeys in the stream, end to end on the real broker: hundreds of profiles go through a
journey with four stages, a decision, an A/B test, a wait for an event with a timeout, a merge,
a jump, milestones and a goal, while a test clock moves forward; every profile's transitions,
activations and journey state equal the reference model's. Then the worker is stopped while
profiles wait: after the restart every due wake-up fires once."""
from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from pathlib import Path

from cjo.clock import Clock
from state.definitions import load_definitions
from state.durations import DAY, HOUR
from tests.integration.harness import outputs, send_events, stats, table, wait_processed
from tests.model import ReferenceModel, comparable
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics, generation

JOURNEYS = Path(__file__).resolve().parent / "journeys.yaml"
START = int(time.time() * 1000) - 40 * DAY  # event times are in the past: the clock starts there


def _events(rng, profiles, phase: int, t0: int) -> list:
    log = []
    t = t0
    for _ in range(len(profiles) * 4):
        pid = rng.choice(profiles)
        if phase == 0 and rng.random() < 0.3:
            name = "signup"
        else:
            name = rng.choices(["view", "add_to_cart", "purchase", "unsubscribe"],
                               [70, 15, 12, 1])[0]
        t += 1000
        log.append((pid.encode(), {"event_id": f"p{phase}-{t}", "name": name, "visitor_id": None,
                                   "user_id": pid, "time": t, "request_id": None, "values": {}}))
    return log


def _wait_wakeups(settings, worker, timeout=120.0) -> dict:
    """Until no due wait is left in the index and everything sent is processed."""
    deadline = time.monotonic() + timeout
    time.sleep(0.5)  # a timer tick after the clock moved
    while time.monotonic() < deadline:
        wait_processed(settings, worker)
        seen = stats(settings, worker)
        if seen.get("wakeups_pending_due", 0) == 0:
            wait_processed(settings, worker)
            return seen
        time.sleep(0.3)
    raise AssertionError("due wake-ups were not applied:\n" + worker.log_tail())


def _compare(settings, model):
    states = table(settings, "profiles", "profile")
    expected = model.states()
    wrong = [pid for pid in expected
             if pid not in states or comparable(states[pid]) != expected[pid]]
    assert not wrong, (f"{len(wrong)} profiles differ, e.g. {wrong[0]}:\nstream "
                       f"{states.get(wrong[0], {}).get('journeys')}\nmodel  "
                       f"{expected[wrong[0]]['journeys']}")
    for topic, schema, field in (("journey-transitions", "journey_transition", "transition_id"),
                                 ("activations", "activation", "activation_id")):
        by_id, sequence, _ = outputs(settings, topic, schema, field)
        mine = {r[field]: r for r in model.outputs[topic]}
        assert by_id == mine, f"{topic}: stream and model differ"
        order = defaultdict(list)
        for r in model.outputs[topic]:
            order[r["profile_id"]].append(r[field])
        assert sequence == dict(order), f"{topic}: a profile's order differs"


def _model_funnel(states: dict, journey: str, version: int, order: list[str]) -> dict:
    """The funnel's sets, straight from the model's journey states (no SQL)."""
    cells = {pid: p["journeys"][journey]["sparse"].get(str(version), {})
             for pid, p in states.items() if journey in p["journeys"]}

    def having(test):
        return {pid for pid, c in cells.items() if any(test(k, v) for k, v in c.items())}

    goal = having(lambda k, v: k == "goal")
    funnel = {}
    for i, stage in enumerate(order):
        entered = having(lambda k, v: k == f"stage:{stage}")
        following = having(lambda k, v: k == f"stage:{order[i + 1]}") if i + 1 < len(order) \
            else set()
        funnel[stage] = {
            "entered": len(entered),
            "in_now": len(having(lambda k, v: k == f"stage:{stage}" and v["last_left"] is None)),
            "milestone": len(having(lambda k, v: k == f"milestone:{stage}")),
            "exited_stage": len(having(lambda k, v: k.startswith(f"exit:{stage}:"))),
            "exited_journey": len(having(lambda k, v: k.startswith("exit:journey:")
                                         and k.endswith(f"@{stage}"))),
            "to_next": len(entered & following), "goal": len(entered & goal)}
    return funnel


def test_journey_transitions_equal_the_reference_model(settings, workers, tmp_path):
    """... and the sidecar, fed by the worker's snapshots, counts the same funnel as the
    reference model, with no violation found by the consistency check."""
    settings = settings.with_(commit_interval=0.5, snapshot_interval=1.0,
                              snapshot_dir=str(tmp_path / "snapshots"))
    clock = Clock(str(tmp_path / "clock"))
    clock.set(START)  # the worker's clock stands at START until the test moves it
    ensure_topics(settings)
    source = JOURNEYS.read_text()
    asyncio.run(apply_definitions(settings, source))
    model = ReferenceModel(load_definitions(source), generation(settings))
    worker = workers(settings, extra_env={"CJO_CLOCK_FILE": clock.path})

    rng = random.Random(4)
    profiles = [f"j{i:04d}" for i in range(300)]
    for phase, move in enumerate([5 * HOUR, 26 * HOUR, 2 * DAY, 8 * DAY]):
        # Events happen just after the clock's time; then the clock moves on past waits.
        log = _events(rng, profiles, phase, clock.now_ms())
        for (partition, offset), (_, event) in zip(send_events(settings, log), log):
            model.apply(partition, offset, event)
        wait_processed(settings, worker)
        now = clock.move(max(move, log[-1][1]["time"] - clock.now_ms() + move))
        model.wake_until(now)
        seen = _wait_wakeups(settings, worker)
    _compare(settings, model)

    kinds = defaultdict(int)
    for r in model.outputs["journey-transitions"]:
        kinds[r["kind"]] += 1
    for kind in ("entered_journey", "entered_stage", "branch_taken", "milestone_reached",
                 "goal_reached", "journey_exited", "activation"):
        assert kinds[kind] > 0, f"the workload never produced {kind}"
    assert seen["wakeups_applied"] > 50

    from sidecar.follower import check_report, follow
    from tests.integration.test_snapshots import wait_for_snapshots

    wait_for_snapshots(settings)
    order = ["welcome", "browsing", "cart", "loyal"]
    result = asyncio.run(follow(settings, once=True))
    sidecar = {s["stage"]: {k: s[k] for k in ("entered", "in_now", "milestone",
                                              "exited_stage", "exited_journey", "to_next",
                                              "goal")}
               for stages in result["journeys"] for s in stages}
    expected = _model_funnel(model.states(), "onboarding", 1, order)
    assert sidecar == {s: c for s, c in expected.items() if c["entered"]}
    assert sum(c["entered"] for c in expected.values()) > 300
    report = check_report(settings, 100.0)
    assert report.ok and report.recounted_profiles > 200, report


def _version(payload: str, wait: str) -> dict:
    return {"journeys": [{
        "id": "promo", "entry": {"event.name": {"eq": "signup"}},
        "stages": [{"id": "only", "steps": [
            {"id": "pause", "kind": "wait", "duration": wait, "next": "send"},
            {"id": "send", "kind": "activation", "destination": "email",
             "payload": {"template": payload}, "next": "done"},
            {"id": "done", "kind": "end"}]}]}]}


def _signups(prefix: str, n: int, at: int) -> list:
    return [(f"{prefix}{i}".encode(), {"event_id": f"{prefix}{i}", "name": "signup",
                                       "visitor_id": None, "user_id": f"{prefix}{i}",
                                       "time": at, "request_id": None, "values": {}})
            for i in range(n)]


def test_a_changed_journey_applies_without_restart_and_waiting_profiles_keep_their_version(
        settings, workers, tmp_path):
    settings = settings.with_(commit_interval=0.5)
    clock = Clock(str(tmp_path / "clock"))
    clock.set(START)
    ensure_topics(settings)
    assert asyncio.run(apply_definitions(settings, _version("first", "1d"))) == [
        ("journey:promo:v1", 1)]
    worker = workers(settings, extra_env={"CJO_CLOCK_FILE": clock.path})
    send_events(settings, _signups("old", 50, START))
    wait_processed(settings, worker)

    # Version 2 while the first 50 wait in version 1; the worker keeps running.
    assert asyncio.run(apply_definitions(settings, _version("second", "1h"))) == [
        ("journey:promo:v2", 2)]
    while stats(settings, worker)["definitions"].get("journey:promo:v2") != 2:
        time.sleep(0.2)
    send_events(settings, _signups("new", 50, START + 1000))
    wait_processed(settings, worker)
    clock.move(DAY + HOUR)
    _wait_wakeups(settings, worker)

    by_id, _, _ = outputs(settings, "activations", "activation", "activation_id")
    sent = {a["profile_id"]: a["payload"]["template"] for a in by_id.values()}
    assert sent == {**{f"old{i}": "first" for i in range(50)},
                    **{f"new{i}": "second" for i in range(50)}}
    transitions, _, _ = outputs(settings, "journey-transitions", "journey_transition",
                                "transition_id")
    versions = {(t["profile_id"][:3], t["version"]) for t in transitions.values()}
    assert versions == {("old", 1), ("new", 2)}
    assert worker.running()
