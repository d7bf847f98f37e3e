"""Time zones, quiet hours and frequency caps end to end (issue 20, parts 2 and 3): profiles in
Berlin, New York and Tokyo sign up over a day that ends in Berlin's spring-forward night; a
push is held through each profile's quiet hours and sent by its wake-up when they are over, a
mail waits for the next 09:00 on the profile's clock, and emails compete for a cap of two a day
(a journey's priority step before a delivery on the same event). The worker's clock moves in
steps with no events; at each step the stream equals the reference model, records and state."""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter

from state.durations import DAY, MINUTE
from state.local_time import zone
from tests.integration.harness import (outputs, same_as_model, send_to_both,
                                       start_against_model, table, wait_processed)
from tests.model import comparable

START = 1_774_656_000_000  # 2026-03-28T00:00:00Z; Berlin springs forward on the 29th
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
PROFILES = 36
DEFINITIONS = """
time_zone: {attribute: tz, default: UTC}
caps:
  email: {max: 2, per: 1d}
segments:
  - {id: anyone, condition: {count.*: {gte: 1}}}
deliveries:
  - {id: promo, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email}
journeys:
  - id: welcome
    entry: {event.name: {eq: signup}}
    stages:
      - id: s
        steps:
          - id: hello
            kind: activation
            destination: push
            quiet_hours: {from: "21:00", to: "08:00", then: hold}
            next: morning
          - {id: morning, kind: wait, at: "09:00", next: mail}
          - {id: mail, kind: activation, destination: email, next: rest}
          - {id: rest, kind: wait, duration: 30d, next: done}
          - {id: done, kind: end}
  - id: thanks
    entry: {event.name: {eq: buy}}
    stages:
      - id: s
        steps:
          - {id: note, kind: activation, destination: email, priority: 9, next: done}
          - {id: done, kind: end}
"""
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("journey-transitions", "journey_transition", "transition_id"),
           ("activations", "activation", "activation_id"))


def _events() -> list:
    """Profile i lives in ZONES[i % 3] and signs up i*40 minutes after START; one in two buys
    right after, one in three buys again the next morning (UTC)."""
    log = []
    for i in range(PROFILES):
        pid = f"q{i:03d}"
        t = START + i * 40 * MINUTE
        names = [("attribute", t, {"tz": ZONES[i % 3]}), ("signup", t + MINUTE, {})]
        if i % 2 == 0:
            names.append(("buy", t + 2 * MINUTE, {}))
        if i % 3 == 0:
            names.append(("buy", START + DAY + 7 * 60 * MINUTE + i * MINUTE, {}))
        for n, (name, at, values) in enumerate(names):
            log.append((pid.encode(), {"event_id": f"{pid}-{n}", "name": name,
                                       "visitor_id": None, "user_id": pid, "time": at,
                                       "request_id": None, "values": values}))
    return sorted(log, key=lambda e: e[1]["time"])


def test_quiet_hours_time_zones_and_caps_against_the_model(settings, workers, tmp_path):
    settings = settings.with_(commit_interval=0.5)
    clock, model, worker = start_against_model(settings, workers, tmp_path, DEFINITIONS, START)
    log = _events()
    send_to_both(settings, model, [e for e in log if e[1]["time"] < START + DAY])
    wait_processed(settings, worker)

    later = [e for e in log if e[1]["time"] >= START + DAY]
    for step_to in (START + DAY, START + DAY + 7 * 60 * MINUTE, START + 2 * DAY,
                    START + 3 * DAY):
        if later and step_to > START + DAY + 7 * 60 * MINUTE:  # the next morning's buys
            send_to_both(settings, model, later)
            later = []
            wait_processed(settings, worker)  # applied before the waits due after them
        model.wake_until(step_to)
        clock.set(step_to)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not same_as_model(settings, model, OUTPUTS):
            time.sleep(0.3)
        wait_processed(settings, worker)
        assert same_as_model(settings, model, OUTPUTS), step_to

    states = table(settings, "profiles", "profile")
    assert {pid: comparable(p) for pid, p in states.items()} == model.states()

    activations, _, _ = outputs(settings, "activations", "activation", "activation_id")
    transitions, _, _ = outputs(settings, "journey-transitions", "journey_transition",
                                "transition_id")
    kinds = Counter((t["kind"], t["reason"]) for t in transitions.values()
                    if t["kind"].startswith("activation"))
    # Every kind of outcome happened: held through quiet hours (then sent), and capped.
    assert kinds[("activation_held", "quiet_hours")] > 0, kinds
    assert kinds[("activation_suppressed", "capped:email")] > 0, kinds
    suppressed = Counter(a["suppressed"] for a in activations.values())
    assert suppressed["capped:email"] == kinds[("activation_suppressed", "capped:email")] + sum(
        1 for a in activations.values() if a["delivery"] == "promo" and a["suppressed"])
    tz = {f"q{i:03d}": zone(ZONES[i % 3]) for i in range(PROFILES)}
    for a in activations.values():
        wall = dt.datetime.fromtimestamp(a["time"] / 1000, tz[a["profile_id"]])
        if a["delivery"] == "welcome/hello":  # never in the quiet hours
            assert 8 <= wall.hour < 21, a
        if a["delivery"] == "welcome/mail":  # 09:00 on the profile's clock, DST or not
            assert (wall.hour, wall.minute) == (9, 0), a
    sent = Counter(a["delivery"] for a in activations.values() if a["suppressed"] is None)
    assert sent["welcome/hello"] == PROFILES and sent["welcome/mail"] > 0
    # At most two emails within any day of a profile's sends.
    emails: dict[str, list[int]] = {}
    for a in activations.values():
        if a["destination"] == "email" and a["suppressed"] is None:
            emails.setdefault(a["profile_id"], []).append(a["time"])
    for times in emails.values():
        times.sort()
        assert all(times[k + 2] - times[k] >= DAY for k in range(len(times) - 2)), times
