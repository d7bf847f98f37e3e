"""Time zones, quiet hours, frequency caps and priority (issue 20, parts 2 and 3): docs/journeys.md
rules 17-21, each with its tests, named after the rule. Most tests drive the profile agent
(state.processing.step, through a JSON wire) and the reference model (tests/model.py) with the
same events and the same clock, and check both the outcome and that the two agree."""
from __future__ import annotations

import copy
import datetime as dt

import pytest
import yaml

from state.activation_rules import Cap, Pending, QuietHours, TimeZoneRule, settle
from state.definition_errors import DefinitionError
from state.definitions import from_records, load_definitions, to_records
from state.durations import DAY, HOUR, MINUTE
from state.local_time import UTC, next_reached, reached, zone, zone_names
from state.processing import step, waits
from state.profile import fold_visitor, new_profile
from tests.model import ReferenceModel
from tests.unit.test_processing import WIRE, decoded

BERLIN, NEW_YORK, TOKYO = "Europe/Berlin", "America/New_York", "Asia/Tokyo"


def local_ms(name: str, text: str, fold: int = 0) -> int:
    """Milliseconds of a wall-clock time ("2026-03-28T10:00") in zone `name`."""
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=zone(name), fold=fold)
    return int(moment.timestamp()) * 1000


def utc_ms(text: str) -> int:
    return local_ms("UTC", text)


def iso(ms: int, name: str = "UTC") -> str:
    return dt.datetime.fromtimestamp(ms / 1000, zone(name)).isoformat()


# ---------------------------------------------------------------- both: agent and model


class Both:
    """The profile agent and the reference model, fed the same events and clock. Every output
    is kept per topic; `check` says the two made the same records and hold the same state."""

    def __init__(self, text: str) -> None:
        self.model = ReferenceModel(load_definitions(text))
        self.defs = self.model.defs  # as a worker reads them from the definitions topic
        self.profiles: dict[str, dict] = {}
        self.outputs: dict[str, list[dict]] = {}
        self.offset = 0  # of the events topic (one partition)
        self.inputs = 0  # of the profile-inputs partition

    def event(self, name: str, t: int, user: str = "u1", **values) -> list[tuple[str, dict]]:
        ev = {"event_id": f"{name}@{t}:{self.offset}", "name": name, "visitor_id": None,
              "user_id": user, "time": t, "request_id": None, "values": values}
        self.model.apply(0, self.offset, ev)
        made = self._step({"kind": "event", "profile_id": user, "source_partition": 0,
                           "source_offset": self.offset, "event": ev, "visitor_id": None,
                           "member_id": None, "merge_id": None, "state": None})
        self.offset += 1
        return made

    def clock(self, now: int) -> list[tuple[str, dict]]:
        """Every wait due by `now`, earliest first, as the worker's timer sends them."""
        made = []
        self.model.wake_until(now)
        while True:
            due = sorted((d, pid, jid, seq) for pid, p in self.profiles.items()
                         for jid, seq, d in waits(p) if d <= now)
            if not due:
                return made
            d, pid, jid, seq = due[0]
            made += self._step({"kind": "wakeup", "profile_id": pid, "source_partition": -1,
                                "source_offset": -1, "event": None, "visitor_id": None,
                                "member_id": None, "merge_id": None, "state": None,
                                "journey": jid, "seq": seq, "due": d})

    def _step(self, record: dict) -> list[tuple[str, dict]]:
        pid = record["profile_id"]
        profile, sends = step(self.profiles.get(pid), record, self.inputs, None, self.defs,
                              WIRE)
        self.inputs += 1
        self.profiles[pid] = profile
        made = [(topic, r) for topic, _, r in decoded(sends)]
        for topic, r in made:
            self.outputs.setdefault(topic, []).append(r)
        return made

    def check(self) -> None:
        for topic in ("segment-changes", "activations", "journey-transitions"):
            assert self.outputs.get(topic, []) == self.model.outputs[topic], topic
        mine = {pid: {k: p[k] for k in self.model.states()[pid]}
                for pid, p in self.profiles.items()}
        assert copy.deepcopy(mine) == self.model.states()

    def sent(self) -> list[tuple[str, int]]:
        """(delivery, time) of every activation to send."""
        return [(r["delivery"], r["time"]) for r in self.outputs.get("activations", [])
                if r["suppressed"] is None]

    def suppressed(self) -> list[tuple[str, str]]:
        return [(r["delivery"], r["suppressed"]) for r in self.outputs.get("activations", [])
                if r["suppressed"] is not None]

    def moves(self, kinds=("activation", "activation_held", "activation_suppressed")):
        return [(r["kind"], r["from"], r["reason"], r["time"])
                for r in self.outputs.get("journey-transitions", []) if r["kind"] in kinds]


def one_step_journey(jid: str, step: str, entry: str = "start", then: str = "next: rest",
                     **extra) -> str:
    fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
    return f"""
  - id: {jid}
    entry: {{event.name: {{eq: {entry}}}}}
    stages:
      - id: s
        steps:
          - {{{step}{', ' + fields if fields else ''}, {then}}}
          - {{id: rest, kind: wait, duration: 365d, next: done}}
          - {{id: done, kind: end}}"""


def waiting(at: str | None, days: str | None = None, default: str | None = BERLIN) -> str:
    when = (f', at: "{at}"' if at else "") + (f", days: [{days}]" if days else "")
    zone_line = f"time_zone: {{attribute: tz, default: {default}}}" if default else ""
    return f"""
{zone_line}
journeys:
  - id: j
    entry: {{event.name: {{eq: start}}}}
    stages:
      - id: s
        steps:
          - {{id: w, kind: wait{when}, next: hello}}
          - {{id: hello, kind: activation, destination: email, next: rest}}
          - {{id: rest, kind: wait, duration: 365d, next: done}}
          - {{id: done, kind: end}}
"""


def due_of(both: Both, user: str = "u1") -> int | None:
    return both.profiles[user]["journeys"]["j"]["due"]


# ---------------------------------------------------------------- rule 17: the profile's zone


def test_rule_17_the_zone_is_the_attribute_when_it_names_one_else_the_default():
    rule = TimeZoneRule("tz", TOKYO)
    profile = new_profile("p")
    assert rule.zone_of(profile).key == TOKYO  # no attribute yet
    for value, expected in ((NEW_YORK, NEW_YORK), ("Japan", "Japan"), ("Mars/Olympus", TOKYO),
                            ("localtime", TOKYO), ("Factory", TOKYO), (9, TOKYO), ("", TOKYO),
                            ("../../etc/passwd", TOKYO), ("europe/berlin", TOKYO)):
        profile["last"]["attribute"] = {"tz": value}
        assert rule.zone_of(profile).key == expected, value
    assert TimeZoneRule().zone_of(profile) is UTC  # no attribute configured, no default: UTC


def test_rule_17_zones_come_from_the_tzdata_package_not_the_machine():
    assert {BERLIN, NEW_YORK, TOKYO, "UTC", "US/Eastern"} <= zone_names()
    assert "localtime" not in zone_names() and "Factory" not in zone_names()
    assert zone(BERLIN) is zone(BERLIN)  # loaded once


def test_rule_17_without_time_zone_days_waits_are_in_utc_as_before():
    both = Both(waiting(None, days="mon", default=None))
    sunday_night = utc_ms("2026-01-04T23:00")  # Monday 00:00 in Berlin, still Sunday in UTC
    both.event("start", sunday_night)
    assert due_of(both) == utc_ms("2026-01-05T00:00")
    both.check()


def test_rule_17_a_days_wait_is_in_the_profiles_zone():
    text = """
time_zone: {attribute: tz}
journeys:
  - id: j
    entry: {event.name: {eq: start}}
    stages:
      - id: s
        steps:
          - {id: w, kind: wait, days: [mon], next: hello}
          - {id: hello, kind: activation, destination: email, next: rest}
          - {id: rest, kind: wait, duration: 365d, next: done}
          - {id: done, kind: end}
"""
    both = Both(text)
    t = utc_ms("2026-01-04T16:00")  # Sunday in UTC, Monday 01:00 in Tokyo
    both.event("attribute", t - 1, user="tokyo", tz=TOKYO)
    both.event("start", t, user="tokyo")
    assert both.sent() == [("j/hello", t)]  # Monday where the profile is: straight on
    both.event("attribute", t - 1, user="london", tz="Europe/London")
    both.event("start", t, user="london")
    assert due_of(both, "london") == utc_ms("2026-01-05T00:00")
    both.clock(utc_ms("2026-01-06T00:00"))
    assert both.sent()[-1] == ("j/hello", utc_ms("2026-01-05T00:00"))
    both.check()


def test_rule_17_a_wait_keeps_the_due_it_got_when_the_zone_changes_later():
    both = Both(waiting("09:00"))
    both.event("attribute", utc_ms("2026-01-05T00:00"), tz=TOKYO)
    both.event("start", utc_ms("2026-01-05T01:00"))  # 10:00 in Tokyo: the next 09:00 tomorrow
    due = local_ms(TOKYO, "2026-01-06T09:00")
    assert due_of(both) == due
    both.event("attribute", utc_ms("2026-01-05T02:00"), tz=NEW_YORK)
    assert due_of(both) == due
    both.clock(due)
    assert both.sent() == [("j/hello", due)]
    both.check()


# ---------------------------------------------------------------- rule 18: times of day, DST


@pytest.mark.parametrize("name, entered, expected", [
    # Europe/Berlin: CET (+1) until 2026-03-29 02:00, CEST (+2) until 2026-10-25 03:00.
    (BERLIN, "2026-03-28T10:00", "2026-03-29T07:00"),  # across spring forward: 09:00 CEST
    (BERLIN, "2026-03-29T08:00", "2026-03-29T07:00"),  # on the day, before 09:00
    (BERLIN, "2026-10-24T10:00", "2026-10-25T08:00"),  # across fall back: 09:00 CET
    (BERLIN, "2026-10-25T08:59", "2026-10-25T08:00"),
    # America/New_York: EST (-5) until 2026-03-08 02:00, EDT (-4) until 2026-11-01 02:00.
    (NEW_YORK, "2026-03-07T10:00", "2026-03-08T13:00"),  # 09:00 EDT
    (NEW_YORK, "2026-03-08T01:30", "2026-03-08T13:00"),
    (NEW_YORK, "2026-10-31T10:00", "2026-11-01T14:00"),  # 09:00 EST
    (NEW_YORK, "2026-11-01T01:30", "2026-11-01T14:00"),
])
def test_rule_18_a_09_00_wait_is_due_at_09_00_local_across_both_dst_switches(name, entered,
                                                                              expected):
    both = Both(waiting("09:00", default=name))
    t = local_ms(name, entered)
    both.event("start", t)
    assert due_of(both) == utc_ms(expected), iso(due_of(both), name)
    assert dt.datetime.fromtimestamp(due_of(both) / 1000, zone(name)).strftime("%H:%M") \
        == "09:00"
    both.clock(utc_ms(expected) - 1)
    assert both.sent() == []
    both.clock(utc_ms(expected))
    assert both.sent() == [("j/hello", utc_ms(expected))]
    both.check()


@pytest.mark.parametrize("name, at, entered, expected", [
    # 02:30 does not exist on the spring-forward day: due when the clock jumps past it.
    (BERLIN, "02:30", "2026-03-29T00:00", "2026-03-29T01:00"),  # 03:00 CEST
    (NEW_YORK, "02:30", "2026-03-08T00:00", "2026-03-08T07:00"),  # 03:00 EDT
    # ... and the next day it is an ordinary 02:30 again.
    (BERLIN, "02:30", "2026-03-29T03:10", "2026-03-30T00:30"),
    # 02:30 happens twice in Berlin on 2026-10-25, 01:30 twice in New York on 2026-11-01:
    # first the summer-time one, and after it the standard-time one.
    (BERLIN, "02:30", "2026-10-25T00:00", "2026-10-25T00:30"),  # 02:30 CEST
    (BERLIN, "02:30", "2026-10-25T02:40", "2026-10-25T01:30"),  # after 02:30 CEST: 02:30 CET
    (NEW_YORK, "01:30", "2026-11-01T00:00", "2026-11-01T05:30"),  # 01:30 EDT
    (NEW_YORK, "01:30", "2026-11-01T01:40", "2026-11-01T06:30"),  # 01:30 EST
])
def test_rule_18_a_time_that_does_not_exist_or_exists_twice(name, at, entered, expected):
    both = Both(waiting(at, default=name))
    both.event("start", local_ms(name, entered))  # fold=0: the first of a repeated time
    assert iso(due_of(both)) == iso(utc_ms(expected))
    both.clock(utc_ms(expected))
    assert both.sent() == [("j/hello", utc_ms(expected))]
    both.check()


def test_rule_18_reached_lists_one_two_or_the_jump():
    assert reached(dt.date(2026, 6, 1), 9 * 60, zone(BERLIN)) == (utc_ms("2026-06-01T07:00"),)
    assert reached(dt.date(2026, 3, 29), 150, zone(BERLIN)) == (utc_ms("2026-03-29T01:00"),)
    assert reached(dt.date(2026, 11, 1), 90, zone(NEW_YORK)) == (
        utc_ms("2026-11-01T05:30"), utc_ms("2026-11-01T06:30"))


def test_rule_18_at_the_time_itself_the_wait_goes_straight_on_and_days_go_with_at():
    both = Both(waiting("09:00", days="mon, thu", default=TOKYO))
    monday_nine = local_ms(TOKYO, "2026-01-05T09:00")
    both.event("start", monday_nine)
    assert both.sent() == [("j/hello", monday_nine)]
    both.event("start", local_ms(TOKYO, "2026-01-05T09:00") + 1, user="u2")
    assert due_of(both, "u2") == local_ms(TOKYO, "2026-01-08T09:00")  # Thursday 09:00
    both.check()


def test_rule_18_next_reached_is_at_most_a_week_and_a_day_ahead_for_any_zone():
    t = utc_ms("2026-03-29T00:30")
    for name in sorted(zone_names())[::7]:
        for minute in (0, 150, 23 * 60 + 59):
            due = next_reached(t, zone(name), minute, (6,))
            assert t <= due <= t + 9 * DAY, (name, minute)


# ---------------------------------------------------------------- rule 19: quiet hours


QUIET = """
time_zone: {attribute: tz, default: Europe/Berlin}
quiet_hours:
  email: {from: "21:00", to: "08:00", then: hold}
segments:
  - {id: anyone, condition: {count.*: {gte: 1}}}
deliveries:
  - {id: banner, segment: anyone, trigger: {event.name: {eq: view}}, limits: {total: 1},
     quiet_hours: {from: "22:00", to: "07:00", then: drop}}
journeys:
  - id: j
    entry: {event.name: {eq: start}}
    exits: [{event.name: {eq: stop}}]
    stages:
      - id: s
        steps:
          - {id: hello, kind: activation, destination: email, payload: {t: hi}, next: push}
          - {id: push, kind: activation, destination: push, next: rest,
             quiet_hours: {from: "21:00", to: "08:00", then: drop}}
          - {id: rest, kind: wait, duration: 365d, next: done}
          - {id: done, kind: end}
"""


def test_rule_19_within_quiet_hours_a_step_is_held_until_they_are_over_then_sent():
    both = Both(QUIET)
    late = local_ms(BERLIN, "2026-01-05T22:30")
    both.event("start", late)
    # Held: no activation, a transition that says why, the profile waits in the step.
    assert both.moves() == [("activation_held", "hello", "quiet_hours", late)]
    assert both.sent() == []
    state = both.profiles["u1"]["journeys"]["j"]
    morning = local_ms(BERLIN, "2026-01-06T08:00")
    assert (state["step"], state["due"]) == ("hello", morning)
    both.clock(morning - 1)
    assert both.sent() == []
    both.clock(morning)
    assert both.sent() == [("j/hello", morning), ("j/push", morning)]
    assert both.moves()[1:] == [("activation", "hello", None, morning),
                                ("activation", "push", None, morning)]
    released = [r for r in both.outputs["activations"] if r["delivery"] == "j/hello"][0]
    assert released["caused_by"].startswith("wakeup:u1:j:") and released["payload"] == {"t": "hi"}
    both.check()


def test_rule_19_outside_quiet_hours_nothing_changes():
    both = Both(QUIET)
    noon = local_ms(BERLIN, "2026-01-05T12:00")
    both.event("start", noon)
    assert both.moves() == [("activation", "hello", None, noon),
                            ("activation", "push", None, noon)]
    both.check()


def test_rule_19_drop_records_a_suppressed_activation_and_the_journey_goes_on():
    both = Both(QUIET.replace('email: {from: "21:00", to: "08:00", then: hold}',
                              'email: {from: "21:00", to: "08:00", then: drop}'))
    late = local_ms(BERLIN, "2026-01-05T23:00")
    both.event("start", late)
    assert both.moves() == [("activation_suppressed", "hello", "quiet_hours", late),
                            ("activation_suppressed", "push", "quiet_hours", late)]
    assert both.sent() == []
    assert both.suppressed() == [("j/hello", "quiet_hours"), ("j/push", "quiet_hours")]
    assert both.profiles["u1"]["journeys"]["j"]["step"] == "rest"
    transitions = [r["transition_id"] for r in both.outputs["journey-transitions"]]
    assert f"cjo/u1/event:start@{late}:0/journey/j/activation_suppressed/hello/email" \
        in transitions
    both.check()


def test_rule_19_the_quiet_hours_are_the_profiles_own_clock():
    both = Both(QUIET)
    t = utc_ms("2026-01-05T22:30")  # 23:30 in Berlin, 17:30 in New York
    both.event("attribute", t - 1, tz=NEW_YORK)
    both.event("start", t)
    assert [m[0] for m in both.moves()] == ["activation", "activation"]
    both.check()


def test_rule_19_a_profile_that_leaves_while_held_is_never_sent_the_activation():
    both = Both(QUIET)
    both.event("start", local_ms(BERLIN, "2026-01-05T22:30"))
    both.event("stop", local_ms(BERLIN, "2026-01-05T23:00"))
    both.clock(local_ms(BERLIN, "2026-01-06T12:00"))
    assert both.sent() == [] and waits(both.profiles["u1"]) == set()
    both.check()


def test_rule_19_a_step_can_say_quiet_hours_false_whatever_its_destination_says():
    text = QUIET.replace("{id: hello, kind: activation, destination: email, payload: {t: hi},",
                         "{id: hello, kind: activation, destination: email, quiet_hours: false,"
                         " payload: {t: hi},")
    both = Both(text)
    late = local_ms(BERLIN, "2026-01-05T22:30")
    both.event("start", late)
    assert both.moves()[0] == ("activation", "hello", None, late)
    both.check()


def test_rule_19_a_held_step_is_released_when_the_quiet_hours_end_in_a_dst_gap():
    text = QUIET.replace('to: "08:00", then: hold', 'to: "02:30", then: hold')
    both = Both(text)
    both.event("start", local_ms(BERLIN, "2026-03-28T23:00"))
    jump = utc_ms("2026-03-29T01:00")  # 02:00 CET -> 03:00 CEST: 02:30 is never on the clock
    assert due_of(both) == jump
    both.clock(jump)
    assert both.sent()[0] == ("j/hello", jump)
    both.check()


def test_rule_19_held_again_when_the_profile_moved_into_its_quiet_hours_meanwhile():
    both = Both(QUIET)
    both.event("start", local_ms(BERLIN, "2026-01-05T22:30"))
    seq = both.profiles["u1"]["journeys"]["j"]["seq"]
    # The profile moves to Tokyo: at 08:00 in Berlin it is 16:00 there, no quiet hours; to
    # New York instead: 02:00 there, quiet: held again, under a new seq (the old wake-up is
    # stale from then on).
    both.event("attribute", local_ms(BERLIN, "2026-01-06T01:00"), tz=NEW_YORK)
    morning = local_ms(BERLIN, "2026-01-06T08:00")
    both.clock(morning)
    state = both.profiles["u1"]["journeys"]["j"]
    assert state["seq"] == seq + 1 and state["due"] == local_ms(NEW_YORK, "2026-01-06T08:00")
    assert both.moves()[-1] == ("activation_held", "hello", "quiet_hours", morning)
    both.clock(local_ms(NEW_YORK, "2026-01-06T08:00"))
    assert both.sent()[0] == ("j/hello", local_ms(NEW_YORK, "2026-01-06T08:00"))
    both.check()


def test_rule_19_a_delivery_in_its_quiet_hours_is_dropped_and_not_counted():
    both = Both(QUIET)
    night = local_ms(BERLIN, "2026-01-05T23:00")
    both.event("view", night)
    assert both.suppressed() == [("banner", "quiet_hours")] and both.sent() == []
    record = both.outputs["activations"][0]
    assert record["destination"] == "web"
    assert record["activation_id"] == f"cjo/u1/event:view@{night}:0/delivery/banner"
    day = local_ms(BERLIN, "2026-01-06T10:00")
    both.event("view", day)  # limits total 1: the dropped one did not count
    assert both.sent() == [("banner", day)]
    both.event("view", day + HOUR)
    assert both.sent() == [("banner", day)]
    both.check()


def test_rule_19_quiet_hours_across_midnight_and_within_one_day():
    night = QuietHours(21 * 60, 8 * 60, "drop")
    day = QuietHours(12 * 60, 14 * 60, "hold")
    for text, at_night, at_day in (("2026-01-05T20:59", False, False),
                                   ("2026-01-05T21:00", True, False),
                                   ("2026-01-06T07:59", True, False),
                                   ("2026-01-06T08:00", False, False),
                                   ("2026-01-06T12:00", False, True),
                                   ("2026-01-06T14:00", False, False)):
        t = local_ms(BERLIN, text)
        assert night.within(zone(BERLIN), t) is at_night, text
        assert day.within(zone(BERLIN), t) is at_day, text
    assert day.over(zone(BERLIN), local_ms(BERLIN, "2026-01-06T12:30")) == \
        local_ms(BERLIN, "2026-01-06T14:00")


# ---------------------------------------------------------------- rules 20-21: caps, priority


CAPS = """
caps:
  email: {max: 2, per: 1d}
segments:
  - {id: anyone, condition: {count.*: {gte: 1}}}
deliveries:
  - {id: mail_a, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email}
  - {id: mail_b, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email,
     priority: 10, limits: {total: 5}}
  - {id: banner, segment: anyone, trigger: {event.name: {eq: buy}}}
journeys:""" + one_step_journey(
    "first", "id: hello, kind: activation, destination: email", entry="buy") + \
    one_step_journey("second", "id: hello, kind: activation, destination: email",
                     entry="buy", priority=5)


def test_rule_20_a_cap_counts_every_delivery_and_journey_and_suppresses_past_it():
    both = Both(CAPS)
    t = utc_ms("2026-01-05T10:00")
    both.event("buy", t)
    # Four emails compete on one input for two slots: mail_b (10), second/hello (5), then the
    # ties at 0 by id: first/hello before mail_a. The banner (web) has no cap.
    assert sorted(both.sent()) == [("banner", t), ("mail_b", t), ("second/hello", t)]
    assert sorted(both.suppressed()) == [("first/hello", "capped:email"),
                                         ("mail_a", "capped:email")]
    assert ("activation_suppressed", "hello", "capped:email", t) in both.moves()
    suppressed = [r for r in both.outputs["journey-transitions"]
                  if r["kind"] == "activation_suppressed"]
    assert [r["journey"] for r in suppressed] == ["first"]
    assert suppressed[0]["transition_id"] == \
        f"cjo/u1/event:buy@{t}:0/journey/first/activation_suppressed/hello/email"
    assert both.profiles["u1"]["journeys"]["first"]["step"] == "rest"  # it went on
    assert both.profiles["u1"]["sends"] == {"email": [t, t]}
    both.check()


def test_rule_20_the_window_slides():
    both = Both(CAPS.replace("priority: 10, limits: {total: 5}", "priority: 10"))
    t = utc_ms("2026-01-05T10:00")
    both.event("buy", t)
    both.event("buy", t + DAY - 1)  # both email slots of the day are taken
    assert [d for d, _ in both.sent() if d != "banner"] == ["mail_b", "second/hello"]
    both.event("buy", t + DAY)  # the first two sends are a day old: two slots again
    assert sorted(d for d, tt in both.sent() if tt == t + DAY) == ["banner", "mail_a", "mail_b"]
    both.check()


def test_rule_20_a_capped_delivery_is_not_counted_by_its_own_limits():
    both = Both("""
caps: {email: {max: 1, per: 1d}}
segments: [{id: anyone, condition: {count.*: {gte: 1}}}]
deliveries:
  - {id: a, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email, priority: 1}
  - {id: b, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email,
     limits: {total: 1, per_day: 1}}
""")
    t = utc_ms("2026-01-05T10:00")
    both.event("buy", t)
    assert both.sent() == [("a", t)] and both.suppressed() == [("b", "capped:email")]
    assert both.profiles["u1"]["deliveries"]["b"]["total"] == 0
    both.event("buy", t + DAY)
    assert both.sent()[-1] == ("a", t + DAY)  # a wins again; b still has its one
    both.check()


def test_rule_20_a_held_activation_takes_its_slot_when_it_is_sent():
    both = Both("""
time_zone: {default: Europe/Berlin}
caps: {email: {max: 1, per: 1d}}
segments: [{id: anyone, condition: {count.*: {gte: 1}}}]
deliveries:
  - {id: mail, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email}
journeys:""" + one_step_journey(
        "j", "id: hello, kind: activation, destination: email", entry="start",
        quiet_hours='{from: "21:00", to: "08:00", then: hold}'))
    both.event("start", local_ms(BERLIN, "2026-01-05T22:00"))  # held: takes nothing
    morning = local_ms(BERLIN, "2026-01-06T07:00")
    both.event("buy", morning)
    assert both.sent() == [("mail", morning)]
    both.clock(local_ms(BERLIN, "2026-01-06T08:00"))  # released into a full cap
    assert both.suppressed() == [("j/hello", "capped:email")]
    assert both.moves()[-1][:3] == ("activation_suppressed", "hello", "capped:email")
    both.check()


def test_rule_20_several_caps_on_one_destination_all_hold():
    both = Both("""
caps: {push: [{max: 1, per: 1h}, {max: 3, per: 7d}]}
segments: [{id: anyone, condition: {count.*: {gte: 1}}}]
deliveries:
  - {id: p, segment: anyone, trigger: {event.name: {eq: buy}}, destination: push}
""")
    t = utc_ms("2026-01-05T10:00")
    for k in range(8):
        both.event("buy", t + k * 30 * MINUTE)
    assert [tt for _, tt in both.sent()] == [t, t + HOUR, t + 2 * HOUR]
    assert len(both.suppressed()) == 5
    both.event("buy", t + 7 * DAY + 1)
    assert both.sent()[-1] == ("p", t + 7 * DAY + 1)
    assert both.profiles["u1"]["sends"]["push"] == [t + HOUR, t + 2 * HOUR, t + 7 * DAY + 1]
    both.check()


def test_rule_20_a_profile_keeps_only_the_sends_its_caps_count():
    caps = {"email": (Cap(3, DAY),)}
    profile = new_profile("p")
    profile["sends"] = {"email": [1, 2], "gone": [5]}  # a destination whose cap was removed
    records = []
    for k in range(10):
        record = {"suppressed": None}
        records.append(record)
        settle(profile, [Pending(0, "d", "email", 10 * DAY + k * HOUR, record)], caps)
    assert [r["suppressed"] for r in records] == [None] * 3 + ["capped:email"] * 7
    assert profile["sends"] == {"email": [10 * DAY, 10 * DAY + HOUR, 10 * DAY + 2 * HOUR]}
    settle(profile, [Pending(0, "d", "email", 12 * DAY, {"suppressed": None})], caps)
    assert profile["sends"] == {"email": [12 * DAY]}  # older than a day before it: forgotten


def test_rule_20_a_merge_counts_the_visitors_sends_too():
    member, visitor = new_profile("m"), new_profile("v")
    member["sends"] = {"email": [5]}
    visitor["sends"] = {"email": [3], "push": [4]}
    fold_visitor(member, visitor)
    assert member["sends"] == {"email": [3, 5], "push": [4]}


def test_rule_20_no_caps_no_sends_kept():
    both = Both(CAPS.replace("caps:\n  email: {max: 2, per: 1d}\n", ""))
    both.event("buy", utc_ms("2026-01-05T10:00"))
    assert len(both.sent()) == 5 and both.profiles["u1"]["sends"] == {}
    both.check()


def test_rule_21_priority_then_id_then_order_made():
    caps = {"email": (Cap(2, DAY),)}
    made = [Pending(0, "b", "email", 0, {"suppressed": None}),
            Pending(0, "a", "email", 0, {"suppressed": None}),
            Pending(1, "z", "email", 0, {"suppressed": None}),
            Pending(0, "a", "email", 0, {"suppressed": None})]
    settle(new_profile("p") | {"sends": {}}, made, caps)
    assert [p.activation["suppressed"] for p in made] == ["capped:email", None,
                                                          None, "capped:email"]


def test_rule_21_across_inputs_the_first_come_takes_the_slot():
    both = Both("""
caps: {email: {max: 1, per: 1d}}
segments: [{id: anyone, condition: {count.*: {gte: 1}}}]
deliveries:
  - {id: low, segment: anyone, trigger: {event.name: {eq: view}}, destination: email}
  - {id: high, segment: anyone, trigger: {event.name: {eq: buy}}, destination: email,
     priority: 100}
""")
    t = utc_ms("2026-01-05T10:00")
    both.event("view", t)
    both.event("buy", t + 1)  # priority decides among the activations of one input only
    assert both.sent() == [("low", t)] and both.suppressed() == [("high", "capped:email")]
    both.check()


# ---------------------------------------------------------------- definitions


def errors_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(text)
    return info.value.errors


SENDS_EMAIL = """
segments: [{id: s, condition: {count.*: {gte: 1}}}]
deliveries: [{id: d, segment: s, trigger: {event.name: {eq: buy}}, destination: email}]
"""


@pytest.mark.parametrize("text, path, problem", [
    ("time_zone: {attribute: tz, default: Asia/Tokio}", "time_zone.default",
     "unknown time zone 'Asia/Tokio'"),
    ("time_zone: {default: localtime}", "time_zone.default", "unknown time zone 'localtime'"),
    ("time_zone: {attribute: 'bad name'}", "time_zone.attribute", "is not a field name"),
    ("time_zone: {zone: UTC}", "time_zone", "unknown key 'zone'"),
    ("time_zone: Asia/Tokyo", "time_zone", "expected {attribute: <field>, default:"),
    (SENDS_EMAIL + "caps: {emial: {max: 2, per: 1d}}", "caps.emial",
     "no delivery or activation step sends to 'emial' (destinations: email)"),
    (SENDS_EMAIL + "caps: {email: {max: 0, per: 1d}}", "caps.email.max",
     "expected an integer from 1 to 1000, got 0"),
    (SENDS_EMAIL + "caps: {email: {max: 2, per: 0d}}", "caps.email.per",
     "expected a window longer than 0 and at most 365d"),
    (SENDS_EMAIL + "caps: {email: {max: 2, per: 400d}}", "caps.email.per",
     "expected a window longer than 0 and at most 365d"),
    (SENDS_EMAIL + "caps: {email: {max: 2}}", "caps.email.per", "missing"),
    (SENDS_EMAIL + "caps: {email: [{max: 2, per: 1d}, {max: 1, per: 1x}]}", "caps.email[1].per",
     "is not a duration"),
    (SENDS_EMAIL + "caps: {email: []}", "caps.email", "non-empty list"),
    (SENDS_EMAIL + "caps: [email]", "caps", "expected a mapping of destinations"),
    (SENDS_EMAIL + 'quiet_hours: {sms: {from: "21:00", to: "08:00", then: hold}}',
     "quiet_hours.sms", "no delivery or activation step sends to 'sms'"),
    (SENDS_EMAIL + "quiet_hours: {email: {from: 21:00, to: '08:00', then: hold}}",
     "quiet_hours.email.from", "write a time of day in quotes"),
    (SENDS_EMAIL + 'quiet_hours: {email: {from: "25:00", to: "08:00", then: hold}}',
     "quiet_hours.email.from", "'25:00' is not a time of day"),
    (SENDS_EMAIL + 'quiet_hours: {email: {from: "8:00", to: "09:00", then: hold}}',
     "quiet_hours.email.from", "expected a time of day as HH:MM"),
    (SENDS_EMAIL + 'quiet_hours: {email: {from: "08:00", to: "08:00", then: hold}}',
     "quiet_hours.email", "the quiet hours would be empty"),
    (SENDS_EMAIL + 'quiet_hours: {email: {from: "21:00", to: "08:00", then: wait}}',
     "quiet_hours.email.then", "got 'wait': hold"),
    (SENDS_EMAIL + 'quiet_hours: {email: {from: "21:00", to: "08:00"}}',
     "quiet_hours.email.then", "missing"),
    (SENDS_EMAIL + "quiet_hours: {email: false}", "quiet_hours.email",
     "a destination's quiet hours are a mapping"),
    ("segments: [{id: s, condition: {count.*: {gte: 1}}}]\ndeliveries: [{id: d, segment: s, "
     'trigger: {event.name: {eq: buy}}, quiet_hours: {from: "21:00", to: "08:00", '
     "then: hold}}]", "deliveries[0].quiet_hours.then", "cannot be held"),
    ("segments: [{id: s, condition: {count.*: {gte: 1}}}]\ndeliveries: [{id: d, segment: s, "
     "trigger: {event.name: {eq: buy}}, priority: high}]", "deliveries[0].priority",
     "expected an integer"),
    ("segments: [{id: s, condition: {count.*: {gte: 1}}}]\ndeliveries: [{id: d, segment: s, "
     "trigger: {event.name: {eq: buy}}, destination: e mail}]", "deliveries[0].destination",
     "is not a valid id"),
    ("journeys:" + one_step_journey("j", 'id: w, kind: wait, at: "9:00"'),
     "journeys[0].stages[0].steps[0].at", "expected a time of day as HH:MM"),
    ("journeys:" + one_step_journey("j", 'id: w, kind: wait, at: "09:00", duration: 1d'),
     "journeys[0].stages[0].steps[0]", "(got duration, at)"),
    ("journeys:" + one_step_journey("j", "id: a, kind: activation, destination: email",
                                    priority="1.5"),
     "journeys[0].stages[0].steps[0].priority", "expected an integer"),
    ("journeys:" + one_step_journey("j", "id: a, kind: activation, destination: email",
                                    quiet_hours="{from: '21:00', then: hold}"),
     "journeys[0].stages[0].steps[0].quiet_hours.to", "missing"),
])
def test_definitions_name_the_place_and_the_problem(text, path, problem):
    errors = errors_of(text)
    assert [p for p, _ in errors] == [path], errors
    assert problem in errors[0][1], errors


def test_settings_travel_on_the_definitions_topic_and_replace_whole():
    first = load_definitions(SENDS_EMAIL + """
time_zone: {attribute: tz, default: Asia/Tokyo}
quiet_hours: {email: {from: "21:00", to: "08:00", then: hold}}
caps: {email: [{max: 2, per: 1d}, {max: 5, per: 7d}]}
journeys:""" + one_step_journey("j", "id: a, kind: activation, destination: push",
                                priority=3, quiet_hours="false") + one_step_journey(
        "k", 'id: w, kind: wait, at: "09:00", days: [mon, fri]'))
    keys = dict(to_records(first))
    assert keys["settings:time_zone"] == {"id": "time_zone", "time_zone": {
        "attribute": "tz", "default": "Asia/Tokyo"}}
    assert keys["settings:caps"] == {"id": "caps", "caps": {"email": [
        {"max": 2, "per": "1d"}, {"max": 5, "per": "7d"}]}}
    again = from_records(to_records(first, all_versions=True))
    assert (again.time_zone, again.quiet_hours, again.caps) == (
        first.time_zone, first.quiet_hours, first.caps)
    assert again.journeys == first.journeys and again.deliveries == first.deliveries
    # A file without settings keeps them; a setting given replaces the applied one whole.
    kept = load_definitions("segments: []", first)
    assert kept.caps == first.caps and kept.time_zone == first.time_zone
    emptied = load_definitions("caps: {}", first)
    assert emptied.caps == {} and dict(to_records(emptied))["settings:caps"] == {
        "id": "caps", "caps": {}}
    assert emptied.rules.caps == {} and emptied.rules.time_zone == first.time_zone


def test_definitions_without_settings_have_no_settings_records_and_no_rules():
    defs = load_definitions(SENDS_EMAIL)
    assert not [k for k, _ in to_records(defs) if k.startswith("settings:")]
    assert defs.rules.caps == {} and defs.rules.time_zone is None
    assert defs.delivery_quiet_hours == {}


def test_an_unknown_setting_record_is_refused_by_name():
    with pytest.raises(DefinitionError) as info:
        from_records([("settings:colour", {"id": "colour", "colour": "red"})])
    assert info.value.errors == [("settings:colour", "unknown setting (settings are "
                                                     "time_zone, quiet_hours, caps)")]


def test_a_journey_that_uses_none_of_this_parses_as_before():
    """New fields have defaults: a journey body from before parses to an equal journey, so
    applying it again makes no new version."""
    text = "journeys:" + one_step_journey("j", "id: a, kind: activation, destination: push")
    defs = load_definitions(text)
    assert load_definitions(text, defs).journeys[0].version == 1


def test_the_example_shows_a_zone_a_quiet_hours_activation_and_a_cap():
    from pathlib import Path

    doc = yaml.safe_load((Path(__file__).parents[2] / "examples" / "definitions.yaml")
                         .read_text())
    defs = load_definitions(doc)
    assert defs.time_zone is not None and defs.time_zone.attribute
    assert defs.caps
    steps = [s for j in defs.journeys for st in j.stages for s in st.steps]
    assert any(s.quiet_hours for s in steps) or defs.quiet_hours


def test_the_json_schema_lists_the_settings_and_the_new_keys():
    import json
    from pathlib import Path

    from state.definitions import DELIVERY_KEYS, TOP_KEYS
    from tests.unit.test_journey_definitions import schema_errors

    schema = json.loads((Path(__file__).parents[2] / "schemas" / "journey.schema.json")
                        .read_text())
    assert tuple(schema["properties"]) == TOP_KEYS
    assert tuple(schema["$defs"]["delivery"]["properties"]) == DELIVERY_KEYS
    good = yaml.safe_load(SENDS_EMAIL + """
time_zone: {attribute: tz, default: Asia/Tokyo}
quiet_hours: {email: {from: "21:00", to: "08:00", then: hold}}
caps: {email: [{max: 2, per: 1d}], web: {max: 5, per: 7d}}
""")
    assert schema_errors(good, schema) == []
    for bad in ({"caps": {"email": {"max": 0, "per": "1d"}}},
                {"quiet_hours": {"email": {"from": "9:00", "to": "08:00", "then": "hold"}}},
                {"quiet_hours": {"email": {"from": "21:00", "to": "08:00", "then": "wait"}}},
                {"time_zone": {"zone": "UTC"}},
                {"deliveries": [{**good["deliveries"][0], "quiet_hours": {
                    "from": "21:00", "to": "08:00", "then": "hold"}}]}):
        assert schema_errors({**good, **bad}, schema), bad
    wait = schema["$defs"]["waitStep"]
    base = {"id": "w", "kind": "wait", "next": "n"}
    assert schema_errors({**base, "at": "09:00"}, wait) == []
    assert schema_errors({**base, "at": "09:00", "days": ["mon"]}, wait) == []
    assert schema_errors({**base, "at": "09:00", "duration": "1d"}, wait)
    assert schema_errors({**base, "at": "24:00"}, wait)
    step = schema["$defs"]["activationStep"]
    act = {"id": "a", "kind": "activation", "destination": "push", "next": "n"}
    assert schema_errors({**act, "priority": 3, "quiet_hours": False}, step) == []
    assert schema_errors({**act, "quiet_hours": {"from": "21:00", "to": "08:00",
                                                 "then": "hold"}}, step) == []
    assert schema_errors({**act, "priority": "high"}, step)
