"""Journey definitions: a journey in YAML becomes a typed Journey, or every problem of it is
reported at once with its exact path; journeys are versioned (a changed body is a new version,
every version is kept on the definitions topic); the published JSON Schema accepts what the
loader accepts and rejects the shapes it rejects."""
import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml

from state.conditions import InSegment, parse_condition
from state.definitions import DefinitionError, from_records, load_definitions, to_records
from state.durations import DAY
from state.journey_definitions import (JOURNEY_KEYS, STAGE_KEYS, STEP_KEYS, journey_source,
                                       parse_journey)
from state.journeys import REENTRY_MODES, STEP_KINDS, WEEKDAYS, Branch, Journey

ROOT = Path(__file__).resolve().parents[2]
SEGMENTS = {"members", "buyers", "churned", "cart_abandoners"}

# The onboarding journey of the journey issue: every step kind and every kind of wait.
ONBOARDING = """
id: onboarding
description: From signing up to the first purchase
entry: {segment: members}
reentry: unless_goal
cooldown: 7d
goal: {segment: buyers}
exits: [{segment: churned}]
require_wait_after_activation: true
stages:
  - id: welcome
    milestone: {count.purchase: {gte: 1}}
    steps:
      - {id: hello, kind: activation, destination: email, payload: {template: welcome}, next: wait1}
      - {id: wait1, kind: wait, duration: 1d, next: check}
      - id: check
        kind: decision
        branches: [{id: engaged, condition: {count.view: {gte: 3}}, next: offer}]
        else: nudge
      - id: offer
        kind: ab_test
        variants: [{id: a, weight: 50, next: join}, {id: b, weight: 50, next: join}]
      - {id: nudge, kind: wait, condition: {event.name: {eq: view}}, timeout: 2d, next: join,
         on_timeout: join}
      - {id: join, kind: merge, next: weekday}
      - {id: weekday, kind: wait, days: [mon, tue, wed, thu, fri], next: go}
      - {id: go, kind: jump, stage: second}
  - id: second
    steps:
      - {id: until_date, kind: wait, until: "2026-12-24T00:00:00Z", next: bye}
      - {id: bye, kind: end}
"""

# A realistic second journey: cart recovery that hands buyers over to onboarding.
CART_RECOVERY = """
id: cart_recovery
entry: {all: [{event.name: {eq: add_to_cart}}, {not: {segment: buyers}}]}
reentry: always
cooldown: 1d
goal: {count.purchase: {gte: 1}}
exits: [{event.name: {eq: unsubscribe}}]
stages:
  - id: remind
    steps:
      - {id: grace, kind: wait, duration: 1h, next: still_there}
      - id: still_there
        kind: decision
        branches: [{id: abandoned, condition: {segment: cart_abandoners}, next: reminder}]
        else: done
      - {id: reminder, kind: activation, destination: push, payload: {title: Your cart, badge: 1},
         next: bought}
      - {id: bought, kind: wait, condition: {event.name: {eq: purchase}}, timeout: 2d,
         next: welcome, on_timeout: done}
      - {id: welcome, kind: jump, journey: onboarding}
      - {id: done, kind: end}
"""


def raw(text: str) -> dict:
    return yaml.safe_load(text)


def parse(source, **kw) -> Journey:
    kw.setdefault("segments", SEGMENTS)
    kw.setdefault("journeys", {"onboarding", "cart_recovery", "j"})
    return parse_journey(raw(source) if isinstance(source, str) else source, **kw)


def errors_of(source, **kw) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        parse(source, **kw)
    return info.value.errors


def one_stage(*steps: str, **keys) -> dict:
    """Journey `j` (entry: segment members) with one stage `s` holding the steps (YAML)."""
    journey = {"id": "j", "entry": {"segment": "members"},
               "stages": [{"id": "s", "steps": [raw(step) for step in steps]}]}
    journey.update(keys)
    return journey


def stages(*stage_texts: str, **keys) -> dict:
    """Journey `j` (entry: segment members) with the stages given as YAML."""
    journey = {"id": "j", "entry": {"segment": "members"},
               "stages": [raw(stage) for stage in stage_texts]}
    journey.update(keys)
    return journey


WAIT_END = ("{id: a, kind: wait, duration: 1d, next: b}", "{id: b, kind: end}")
S = "journeys[0].stages[0]"

# ---------------------------------------------------------------- valid journeys


def test_the_onboarding_example_parses_into_the_typed_model():
    j = parse(ONBOARDING)
    assert (j.id, j.version, j.description) == ("onboarding", 1,
                                                "From signing up to the first purchase")
    assert (j.entry, j.goal, j.exits) == (InSegment("members"), InSegment("buyers"),
                                          (InSegment("churned"),))
    assert (j.reentry, j.cooldown) == ("unless_goal", 7 * DAY)
    welcome, second = j.stages
    assert welcome.milestone == parse_condition({"count.purchase": {"gte": 1}})
    assert [(s.id, s.kind) for s in welcome.steps] == [
        ("hello", "activation"), ("wait1", "wait"), ("check", "decision"), ("offer", "ab_test"),
        ("nudge", "wait"), ("join", "merge"), ("weekday", "wait"), ("go", "jump")]
    assert [(s.id, s.kind) for s in second.steps] == [("until_date", "wait"), ("bye", "end")]


def test_every_step_kind_keeps_what_it_needs():
    j = parse(ONBOARDING)
    step = {s.id: s for stage in j.stages for s in stage.steps}
    assert (step["hello"].destination, step["hello"].payload, step["hello"].next) == \
        ("email", {"template": "welcome"}, "wait1")
    assert step["check"].branches == (
        Branch("engaged", "offer", condition=parse_condition({"count.view": {"gte": 3}})),)
    assert step["check"].otherwise == "nudge"
    assert step["offer"].branches == (Branch("a", "join", weight=50),
                                      Branch("b", "join", weight=50))
    assert step["join"].next == "weekday"
    assert (step["go"].to_stage, step["go"].to_journey, step["go"].next) == ("second", None, None)
    assert step["bye"].next is None


def test_every_kind_of_wait_keeps_its_one_setting():
    step = {s.id: s for stage in parse(ONBOARDING).stages for s in stage.steps}
    assert step["wait1"].duration == DAY
    assert (step["nudge"].condition, step["nudge"].timeout, step["nudge"].on_timeout,
            step["nudge"].next) == (parse_condition({"event.name": {"eq": "view"}}), 2 * DAY,
                                    "join", "join")
    assert step["weekday"].days == (0, 1, 2, 3, 4)  # Monday is 0, as datetime.weekday()
    christmas_eve = dt.datetime(2026, 12, 24, tzinfo=dt.timezone.utc)
    assert step["until_date"].until == int(christmas_eve.timestamp()) * 1000
    assert (step["wait1"].until, step["wait1"].days, step["wait1"].condition) == (None, (), None)


@pytest.mark.parametrize("until", [
    "2026-12-24T00:00:00Z", "2026-12-24T09:00:00+09:00", "2026-12-24T00:00:00.000+00:00",
    1798070400000])
def test_until_is_an_iso_time_with_its_zone_or_milliseconds(until):
    j = parse(one_stage(f"{{id: a, kind: wait, until: {json.dumps(until)}, next: b}}",
                        "{id: b, kind: end}"))
    assert j.stages[0].steps[0].until == 1798070400000


def test_an_unquoted_yaml_timestamp_is_a_time_too():
    j = parse(one_stage("{id: a, kind: wait, until: 2026-12-24T00:00:00Z, next: b}",
                        "{id: b, kind: end}"))
    assert j.stages[0].steps[0].until == 1798070400000


def test_days_are_a_set_whatever_their_order():
    j = parse(one_stage("{id: a, kind: wait, days: [sun, fri, mon], next: b}",
                        "{id: b, kind: end}"))
    assert j.stages[0].steps[0].days == (0, 4, 6)


def test_defaults_of_an_optional_setting_free_journey():
    j = parse(one_stage("{id: a, kind: activation, destination: email, next: b}",
                        "{id: b, kind: end}"))
    assert (j.reentry, j.cooldown, j.goal, j.exits, j.description) == ("none", None, None, (),
                                                                       None)
    stage = j.stages[0]
    assert (stage.entry, stage.milestone, stage.exits) == (None, None, ())
    assert stage.steps[0].payload == {}


def test_a_realistic_cart_recovery_journey_jumps_into_another_journey():
    j = parse(CART_RECOVERY)
    assert j.stage("remind").step("welcome").to_journey == "onboarding"
    assert j.entry == parse_condition(
        {"all": [{"event.name": {"eq": "add_to_cart"}}, {"not": {"segment": "buyers"}}]})
    assert j.exits == (parse_condition({"event.name": {"eq": "unsubscribe"}}),)


def test_journey_conditions_may_read_the_current_event_and_its_request():
    j = parse(one_stage(*WAIT_END, entry={"all": [{"event.name": {"eq": "signup"}},
                                                  {"request.path": {"eq": "/welcome"}}]}))
    assert j.entry == parse_condition({"all": [{"event.name": {"eq": "signup"}},
                                               {"request.path": {"eq": "/welcome"}}]})


def test_a_loop_through_a_wait_is_allowed():
    j = parse(one_stage(
        "{id: check, kind: decision, branches: [{id: ok, condition: {count.view: {gte: 3}}, "
        "next: done}], else: later}",
        "{id: later, kind: wait, duration: 1d, next: check}",
        "{id: done, kind: end}"))
    assert j.stages[0].step("later").next == "check"


def test_stages_may_jump_back_to_a_stage_that_starts_with_a_wait():
    j = parse(stages("{id: first, steps: [{id: pause, kind: wait, duration: 1h, next: again}, "
                     "{id: again, kind: jump, stage: first}]}"))
    assert j.stage("first").step("again").to_stage == "first"


def test_stage_entry_milestone_and_exits_are_conditions():
    j = parse(stages("{id: s, entry: {count.view: {gte: 1}}, milestone: {segment: buyers}, "
                     "exits: [{segment: churned}, {since.last_seen: {gt: 30d}}], "
                     "steps: [{id: b, kind: end}]}"))
    stage = j.stages[0]
    assert stage.entry == parse_condition({"count.view": {"gte": 1}})
    assert stage.milestone == InSegment("buyers")
    assert stage.exits == (InSegment("churned"),
                           parse_condition({"since.last_seen": {"gt": "30d"}}))


def test_a_journey_comes_back_equal_from_its_plain_json_body():
    for text in (ONBOARDING, CART_RECOVERY):
        j = parse(text)
        body = json.loads(json.dumps(journey_source(j)))
        assert parse(body) == j


def test_the_body_leaves_out_defaults_and_writes_times_readably():
    body = journey_source(parse(ONBOARDING))
    assert body["cooldown"] == "7d"
    assert body["stages"][1]["steps"][0] == {"id": "until_date", "kind": "wait",
                                             "until": "2026-12-24T00:00:00Z", "next": "bye"}
    assert "require_wait_after_activation" not in body  # a check on the file, not the journey
    assert "reentry" not in journey_source(parse(one_stage(*WAIT_END)))


def test_old_versions_can_skip_the_reference_checks():
    journey = one_stage("{id: a, kind: jump, journey: gone}", entry={"segment": "deleted"})
    assert parse_journey(journey, 3, check_references=False).version == 3
    assert [p for p, _ in errors_of(journey)] == ["journeys[0].entry", f"{S}.steps[0].journey"]


# ---------------------------------------------------------------- invalid journeys

BAD = [
    # shape of the journey
    pytest.param(one_stage(*WAIT_END, owner="me"), "journeys[0]",
                 "unknown key 'owner' for a journey (allowed: id, description, entry, reentry, "
                 "cooldown, goal, exits, require_wait_after_activation, stages)", id="unknown-key"),
    pytest.param({k: v for k, v in one_stage(*WAIT_END).items() if k != "entry"},
                 "journeys[0].entry", "missing: entry criteria", id="no-entry"),
    pytest.param({k: v for k, v in one_stage(*WAIT_END).items() if k != "id"},
                 "journeys[0].id", "missing: every journey needs an id", id="no-id"),
    pytest.param(one_stage(*WAIT_END, id="on boarding"), "journeys[0].id",
                 "'on boarding' is not a valid id: 1 to 64 letters, digits, _ or -", id="bad-id"),
    pytest.param(one_stage(*WAIT_END, description=5), "journeys[0].description",
                 "expected text, got int", id="description-type"),
    pytest.param(one_stage(*WAIT_END, reentry="never"), "journeys[0].reentry",
                 "expected one of none, unless_goal, always, got 'never'", id="reentry-mode"),
    pytest.param(one_stage(*WAIT_END, reentry="unless_goal"), "journeys[0].reentry",
                 "reentry unless_goal needs a goal", id="unless-goal-without-goal"),
    pytest.param(one_stage(*WAIT_END, cooldown="7d"), "journeys[0].cooldown",
                 "a cooldown needs reentry unless_goal or always", id="cooldown-without-reentry"),
    pytest.param(one_stage(*WAIT_END, reentry="always", cooldown="a week"),
                 "journeys[0].cooldown", "'a week' is not a duration", id="cooldown-duration"),
    pytest.param(one_stage(*WAIT_END, require_wait_after_activation="yes"),
                 "journeys[0].require_wait_after_activation", "expected true or false, got 'yes'",
                 id="rule-type"),
    pytest.param(one_stage(*WAIT_END, exits={"segment": "churned"}), "journeys[0].exits",
                 "expected a list of conditions, got dict", id="exits-type"),
    pytest.param(dict(one_stage(*WAIT_END), stages=[]), "journeys[0].stages",
                 "expected a non-empty list of stages, got an empty list", id="no-stages"),
    pytest.param(stages("{id: s, steps: []}"), f"{S}.steps",
                 "expected a non-empty list of steps, got an empty list", id="no-steps"),
    pytest.param(stages("{id: s, name: Welcome, steps: [{id: b, kind: end}]}"), S,
                 "unknown key 'name' for a stage (allowed: id, entry, milestone, exits, steps)",
                 id="stage-unknown-key"),
    pytest.param(stages("{id: s, steps: [end]}"), f"{S}.steps[0]",
                 "expected a step (a mapping with id and kind), got str", id="step-not-mapping"),
    # conditions and what they reference
    pytest.param(one_stage(*WAIT_END, goal={"all": [{"count.view": {"gte": 1}},
                                                    {"count.buy": {"gtt": 1}}]}),
                 "journeys[0].goal.all[1]", "unknown operator 'gtt'", id="bad-condition"),
    pytest.param(stages("{id: s, exits: [{not: {segment: ghost}}], steps: [{id: b, kind: end}]}"),
                 f"{S}.exits[0].not", "unknown segment 'ghost'", id="unknown-segment"),
    pytest.param(one_stage("{id: d, kind: decision, branches: [{id: x, condition: {all: "
                           "[{count.view: {gte: 1}}, {segment: vip}]}, next: b}], else: b}",
                           "{id: b, kind: end}"),
                 f"{S}.steps[0].branches[0].condition.all[1]", "unknown segment 'vip'",
                 id="unknown-segment-in-branch"),
    # steps and what they reference
    pytest.param(one_stage("{id: a, kind: sleep, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].kind", "unknown step kind 'sleep' (one of wait, activation, "
                                       "decision, ab_test, merge, jump, end)", id="step-kind"),
    pytest.param(one_stage("{id: a, kind: wait, duration: 1d, destination: email, next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0]",
                 "unknown key 'destination' for a wait step (allowed: id, kind, next, duration, "
                 "until, condition, timeout, on_timeout, days, at)", id="step-unknown-key"),
    pytest.param(one_stage("{id: a, kind: merge, next: b}", "{id: b, kind: wait, duration: 1d, "
                                                            "next: c}"),
                 f"{S}.steps[1].next", "unknown step 'c' (steps of stage 's': a, b)",
                 id="unknown-next"),
    pytest.param(stages("{id: s, steps: [{id: a, kind: merge, next: b}]}",
                        "{id: t, steps: [{id: b, kind: end}]}"), f"{S}.steps[0].next",
                 "step 'b' is in stage 't', not in 's': use a jump step to change stages",
                 id="next-in-another-stage"),
    pytest.param(one_stage("{id: a, kind: jump, stage: nowhere}"), f"{S}.steps[0].stage",
                 "unknown stage 'nowhere' (stages: s)", id="unknown-stage"),
    pytest.param(one_stage("{id: a, kind: jump, journey: other}"), f"{S}.steps[0].journey",
                 "unknown journey 'other'", id="unknown-journey"),
    pytest.param(one_stage("{id: a, kind: jump}"), f"{S}.steps[0]",
                 "a jump step needs exactly one of stage, journey", id="jump-nowhere"),
    pytest.param(stages("{id: s, steps: [{id: a, kind: end}]}",
                        "{id: s, steps: [{id: b, kind: end}]}"), "journeys[0].stages[1].id",
                 "duplicate stage id 's' (also at journeys[0].stages[0])", id="duplicate-stage"),
    pytest.param(stages("{id: s, steps: [{id: a, kind: end}]}",
                        "{id: t, steps: [{id: a, kind: end}]}"),
                 "journeys[0].stages[1].steps[0].id",
                 "duplicate step id 'a' (also at journeys[0].stages[0].steps[0])",
                 id="duplicate-step-across-stages"),
    pytest.param(one_stage("{id: d, kind: decision, branches: [{id: x, condition: {segment: "
                           "buyers}, next: b}, {id: x, condition: {segment: members}, next: b}], "
                           "else: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].branches[1].id",
                 f"duplicate branch id 'x' (also at {S}.steps[0].branches[0])",
                 id="duplicate-branch"),
    pytest.param(one_stage("{id: t, kind: ab_test, variants: [{id: v, weight: 50, next: b}, "
                           "{id: v, weight: 50, next: b}]}", "{id: b, kind: end}"),
                 f"{S}.steps[0].variants[1].id",
                 f"duplicate variant id 'v' (also at {S}.steps[0].variants[0])",
                 id="duplicate-variant"),
    # next: required by wait, activation and merge, refused by end and jump
    pytest.param(one_stage("{id: a, kind: wait, duration: 1d}"), f"{S}.steps[0].next",
                 "missing: a wait step needs next", id="wait-without-next"),
    pytest.param(one_stage("{id: a, kind: activation, destination: email}"),
                 f"{S}.steps[0].next", "missing: an activation step needs next",
                 id="activation-without-next"),
    pytest.param(one_stage("{id: a, kind: merge}"), f"{S}.steps[0].next",
                 "missing: a merge step needs next", id="merge-without-next"),
    pytest.param(one_stage("{id: a, kind: end, next: a}"), f"{S}.steps[0].next",
                 "an end step is the last step: it has no next", id="end-with-next"),
    pytest.param(one_stage("{id: a, kind: jump, journey: j, next: a}"), f"{S}.steps[0].next",
                 "a jump step leaves for its stage or journey: it has no next",
                 id="jump-with-next"),
    # the graph of steps
    pytest.param(one_stage(*WAIT_END, "{id: c, kind: end}"), f"{S}.steps[2]",
                 "step 'c' is unreachable from the stage's first step 'a'", id="unreachable"),
    pytest.param(one_stage("{id: m, kind: merge, next: d}",
                           "{id: d, kind: decision, branches: [{id: x, condition: {segment: "
                           "buyers}, next: e}], else: m}", "{id: e, kind: end}"),
                 f"{S}.steps[0]", "cycle without a wait: m -> d -> m", id="cycle"),
    pytest.param(one_stage("{id: hello, kind: activation, destination: email, next: go}",
                           "{id: go, kind: jump, stage: s}"),
                 f"{S}.steps[0]", "cycle without a wait: hello -> go -> hello",
                 id="cycle-through-a-jump"),
    pytest.param(one_stage("{id: hello, kind: activation, destination: email, next: m}",
                           "{id: m, kind: merge, next: b}", "{id: b, kind: end}",
                           require_wait_after_activation=True), f"{S}.steps[0]",
                 "require_wait_after_activation: activation 'hello' goes on to 'm', a merge "
                 "step, not a wait", id="wait-after-activation"),
    # decisions and A/B tests
    pytest.param(one_stage("{id: d, kind: decision, branches: [{id: x, condition: {segment: "
                           "buyers}, next: b}]}", "{id: b, kind: end}"), f"{S}.steps[0].else",
                 "missing: a decision step needs else", id="decision-without-else"),
    pytest.param(one_stage("{id: d, kind: decision, branches: [], else: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].branches", "a decision needs at least one branch",
                 id="decision-without-branches"),
    pytest.param(one_stage("{id: t, kind: ab_test, variants: [{id: v, weight: 50, next: b}, "
                           "{id: w, weight: 40, next: b}]}", "{id: b, kind: end}"),
                 f"{S}.steps[0].variants", "weights sum to 90; they must sum to exactly 100",
                 id="weights-sum"),
    pytest.param(one_stage("{id: t, kind: ab_test, variants: [{id: v, weight: 100, next: b}]}",
                           "{id: b, kind: end}"), f"{S}.steps[0].variants",
                 "an ab_test needs at least 2 variants, got 1", id="one-variant"),
    pytest.param(one_stage("{id: t, kind: ab_test, variants: [{id: v, weight: 50.5, next: b}, "
                           "{id: w, weight: 50, next: b}]}", "{id: b, kind: end}"),
                 f"{S}.steps[0].variants[0].weight", "expected an integer >= 0, got 50.5",
                 id="fractional-weight"),
    # waits
    pytest.param(one_stage("{id: a, kind: wait, duration: 1d, days: [mon], next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0]",
                 "a wait step needs exactly one of duration, until, condition, days, at, or "
                 "days with at (got duration, days)", id="two-kinds-of-wait"),
    pytest.param(one_stage("{id: a, kind: wait, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0]", "a wait step needs exactly one of duration, until, "
                                  "condition, days", id="no-kind-of-wait"),
    pytest.param(one_stage("{id: a, kind: wait, duration: 0s, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].duration", "must be longer than 0", id="zero-duration"),
    pytest.param(one_stage("{id: a, kind: wait, condition: {event.name: {eq: view}}, "
                           "on_timeout: b, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].timeout", "missing: a condition wait needs a timeout",
                 id="condition-without-timeout"),
    pytest.param(one_stage("{id: a, kind: wait, condition: {event.name: {eq: view}}, "
                           "timeout: 1d, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].on_timeout", "missing: a condition wait needs on_timeout",
                 id="condition-without-on-timeout"),
    pytest.param(one_stage("{id: a, kind: wait, duration: 1d, timeout: 2d, next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0].timeout",
                 "timeout belongs to a condition wait only", id="timeout-without-condition"),
    pytest.param(one_stage("{id: a, kind: wait, condition: {event.name: {eq: view}}, "
                           "timeout: 2d, on_timeout: z, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].on_timeout", "unknown step 'z'", id="unknown-on-timeout"),
    pytest.param(one_stage("{id: a, kind: wait, days: [mon, funday], next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0].days",
                 "unknown day 'funday' (days are mon, tue, wed, thu, fri, sat, sun)",
                 id="bad-day"),
    pytest.param(one_stage("{id: a, kind: wait, days: [mon, tue, mon], next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0].days",
                 "mon given more than once", id="repeated-day"),
    pytest.param(one_stage("{id: a, kind: wait, days: [], next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].days", "expected a non-empty list of mon, tue", id="no-days"),
    pytest.param(one_stage("{id: a, kind: wait, until: '2026-12-24T00:00:00', next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0].until",
                 "2026-12-24T00:00:00 has no time zone: add Z for UTC", id="until-without-zone"),
    pytest.param(one_stage("{id: a, kind: wait, until: next tuesday, next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0].until",
                 "expected an ISO 8601 time such as 2026-12-24T00:00:00Z", id="until-unparsable"),
    # activations
    pytest.param(one_stage("{id: a, kind: activation, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].destination", "missing: an activation needs a destination",
                 id="no-destination"),
    pytest.param(one_stage("{id: a, kind: activation, destination: e mail, next: b}",
                           "{id: b, kind: end}"), f"{S}.steps[0].destination",
                 "'e mail' is not a valid id", id="bad-destination"),
    pytest.param(one_stage("{id: a, kind: activation, destination: email, "
                           "payload: {banner: {color: red}}, next: b}", "{id: b, kind: end}"),
                 f"{S}.steps[0].payload", "expected a mapping of text keys to values",
                 id="nested-payload"),
]


@pytest.mark.parametrize("journey, path, problem", BAD)
def test_a_bad_journey_names_the_place_and_the_problem(journey, path, problem):
    errors = errors_of(journey)
    assert [p for p, _ in errors] == [path], errors
    assert problem in errors[0][1]


def test_every_problem_of_a_journey_is_reported_at_once():
    errors = errors_of(one_stage(
        "{id: a, kind: wait, duration: soon, next: c}",
        "{id: b, kind: activation, destination: email, next: a}",
        reentry="sometimes"))
    assert errors == [
        ("journeys[0].reentry", "expected one of none, unless_goal, always, got 'sometimes'"),
        (f"{S}.steps[0].duration",
         "'soon' is not a duration: expected a number and one of ms, s, m, h, d, w"),
        (f"{S}.steps[0].next", "unknown step 'c' (steps of stage 's': a, b)"),
        (f"{S}.steps[1]", "step 'b' is unreachable from the stage's first step 'a'"),
    ]


def test_a_step_with_a_problem_of_its_own_is_still_a_known_step():
    # `b` has a bad kind; a's next still names it, and c is not called unreachable.
    errors = errors_of(one_stage("{id: a, kind: wait, duration: 1d, next: b}",
                                 "{id: b, kind: pause, next: c}", "{id: c, kind: end}"))
    assert [p for p, _ in errors] == [f"{S}.steps[1].kind"]


def test_the_path_is_where_the_caller_says_the_journey_is():
    errors = errors_of(one_stage("{id: a, kind: merge}"), path="journeys[4]")
    assert errors == [("journeys[4].stages[0].steps[0].next", "missing: a merge step needs next")]


# ---------------------------------------------------------------- in a definitions file

FILE = """
segments:
  - {id: members, condition: {count.identify: {gte: 1}}}
  - {id: buyers, condition: {count.purchase: {gte: 1}}}
  - {id: churned, condition: {since.last_seen: {gt: 90d}}}
  - id: cart_abandoners
    condition: {all: [{count.add_to_cart: {gte: 1}}, {not: {segment: buyers}}]}
"""


def file_with(*journeys: str, segments: bool = True) -> dict:
    doc = raw(FILE) if segments else {}
    doc["journeys"] = [raw(j) if isinstance(j, str) else j for j in journeys]
    return doc


def file_errors(doc, existing=None) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(doc, existing)
    return info.value.errors


def test_a_file_loads_its_journeys_in_file_order_as_version_1():
    defs = load_definitions(file_with(CART_RECOVERY, ONBOARDING))
    assert [(j.id, j.version) for j in defs.journeys] == [("cart_recovery", 1), ("onboarding", 1)]
    assert defs.journey_versions == {"cart_recovery": {1: defs.journeys[0]},
                                     "onboarding": {1: defs.journeys[1]}}
    assert defs.raw_journeys == tuple(journey_source(j) for j in defs.journeys)


def test_journey_problems_are_reported_with_the_other_problems_of_the_file():
    doc = file_with(one_stage("{id: a, kind: merge}"))
    doc["segments"].append({"id": "bad", "condition": {"count.view": {"gte": "x"}}})
    assert file_errors(doc) == [
        ("segments[4].condition", "'count.view' gte needs a number, got 'x'"),
        ("journeys[0].stages[0].steps[0].next", "missing: a merge step needs next"),
    ]


def test_two_journeys_of_a_file_may_not_share_an_id():
    errors = file_errors(file_with(one_stage(*WAIT_END), one_stage(*WAIT_END)))
    assert errors == [("journeys[1].id", "duplicate journey id 'j' (also at journeys[0])")]


def test_a_journey_may_reference_segments_of_the_file_and_applied_before():
    first = load_definitions(raw(FILE))
    defs = load_definitions({"segments": [{"id": "vip", "condition": {"segment": "buyers"}}],
                             "journeys": [one_stage(*WAIT_END, goal={"segment": "vip"})]}, first)
    assert (defs.journeys[0].entry, defs.journeys[0].goal) == (InSegment("members"),
                                                               InSegment("vip"))
    assert file_errors({"journeys": [one_stage(*WAIT_END, goal={"segment": "vip"})]}) == [
        ("journeys[0].entry", "unknown segment 'members'"),
        ("journeys[0].goal", "unknown segment 'vip'")]


def test_a_jump_may_lead_to_a_journey_of_the_file_or_applied_before():
    first = load_definitions(file_with(ONBOARDING))
    defs = load_definitions(file_with(CART_RECOVERY), first)
    assert [j.id for j in defs.journeys] == ["onboarding", "cart_recovery"]
    assert file_errors(file_with(CART_RECOVERY)) == [
        ("journeys[0].stages[0].steps[4].journey", "unknown journey 'onboarding'")]


def test_a_journey_may_jump_into_itself():
    defs = load_definitions(file_with(one_stage(
        "{id: a, kind: wait, duration: 1d, next: b}", "{id: b, kind: jump, journey: j}")))
    assert defs.journeys[0].stages[0].steps[1].to_journey == "j"


# ---------------------------------------------------------------- versions


def test_applying_the_same_journey_again_keeps_its_version():
    first = load_definitions(file_with(ONBOARDING))
    again = load_definitions(file_with(ONBOARDING), first)
    assert again.journeys[0].version == 1
    assert again.journey_versions == first.journey_versions


def test_the_same_journey_written_differently_keeps_its_version():
    first = load_definitions(file_with(ONBOARDING))
    rewritten = raw(ONBOARDING)
    rewritten["cooldown"] = "168h"
    rewritten["stages"][0]["steps"][6]["days"] = ["fri", "thu", "wed", "tue", "mon"]
    assert load_definitions(file_with(rewritten), first).journeys[0].version == 1


def test_a_changed_journey_becomes_the_next_version_and_the_old_one_stays():
    first = load_definitions(file_with(ONBOARDING))
    changed = raw(ONBOARDING)
    changed["stages"][0]["steps"][1]["duration"] = "2d"
    second = load_definitions(file_with(changed), first)
    third = load_definitions(file_with(ONBOARDING), second)  # back to the first body
    assert [j.version for j in (second.journeys[0], third.journeys[0])] == [2, 3]
    assert sorted(third.journey_versions["onboarding"]) == [1, 2, 3]
    versions = third.journey_versions["onboarding"]
    assert versions[1] == first.journeys[0]
    assert versions[2].stage("welcome").step("wait1").duration == 2 * DAY
    assert versions[3].stage("welcome").step("wait1").duration == DAY
    assert third.journeys == (versions[3],)


def test_a_file_without_journeys_keeps_the_journeys_applied_before():
    first = load_definitions(file_with(ONBOARDING))
    later = load_definitions({"segments": [{"id": "x", "condition": {"count.view": {"gt": 1}}}]},
                             first)
    assert later.journeys == first.journeys
    assert later.journey_versions == first.journey_versions


def test_a_changed_journey_keeps_its_place_among_the_others():
    first = load_definitions(file_with(ONBOARDING, one_stage(*WAIT_END)))
    second = load_definitions({"journeys": [one_stage(*WAIT_END, description="now described")]},
                              first)
    assert [(j.id, j.version) for j in second.journeys] == [("onboarding", 1), ("j", 2)]


# ---------------------------------------------------------------- records

MEMBERS = ("segment:members", {"id": "members", "condition": {"count.identify": {"gte": 1}}})


def test_the_latest_version_of_each_journey_is_one_record_under_its_id():
    first = load_definitions(file_with(ONBOARDING))
    changed = raw(ONBOARDING)
    changed["description"] = "v2"
    defs = load_definitions(file_with(changed), first)
    journeys = [(k, v) for k, v in to_records(defs) if k.startswith("journey:")]
    assert journeys == [("journey:onboarding", journey_source(defs.journeys[0]))]
    assert journeys[0][1]["description"] == "v2"


def test_every_version_can_travel_under_its_own_key_and_comes_back_equal():
    first = load_definitions(file_with(ONBOARDING, CART_RECOVERY))
    changed = raw(ONBOARDING)
    changed["description"] = "v2"
    defs = load_definitions(file_with(changed), first)
    records = to_records(defs, all_versions=True)
    assert [k for k, _ in records if k.startswith("journey:")] == [
        "journey:onboarding", "journey:cart_recovery",
        "journey:onboarding:v1", "journey:onboarding:v2", "journey:cart_recovery:v1"]
    assert from_records(json.loads(json.dumps(records))) == defs


def test_records_keep_every_version_and_the_highest_is_the_latest():
    v1 = journey_source(parse(one_stage(*WAIT_END)))
    v2 = dict(v1, description="second")
    v10 = dict(v1, description="tenth")
    defs = from_records([MEMBERS, ("journey:j:v2", v2), ("journey:j:v10", v10),
                         ("journey:j:v1", v1)])
    assert sorted(defs.journey_versions["j"]) == [1, 2, 10]
    assert [(j.id, j.version, j.description) for j in defs.journeys] == [("j", 10, "tenth")]
    assert defs.journey_versions["j"][2].description == "second"


def test_an_unversioned_record_is_version_1_unless_versioned_ones_exist():
    body = journey_source(parse(one_stage(*WAIT_END)))
    alone = from_records([MEMBERS, ("journey:j", body)])
    assert alone.journeys[0].version == 1 and list(alone.journey_versions["j"]) == [1]
    both = from_records([MEMBERS, ("journey:j", dict(body, description="latest")),
                         ("journey:j:v1", body), ("journey:j:v2", dict(body, description="2"))])
    assert sorted(both.journey_versions["j"]) == [1, 2]
    assert both.journeys[0].description == "2"


def test_a_deleted_version_record_removes_only_that_version():
    body = journey_source(parse(one_stage(*WAIT_END)))
    defs = from_records([MEMBERS, ("journey:j:v1", body),
                         ("journey:j:v2", dict(body, description="2")), ("journey:j:v2", None)])
    assert list(defs.journey_versions["j"]) == [1]
    assert defs.journeys[0].version == 1


def test_an_old_version_may_reference_a_segment_that_is_gone():
    old = journey_source(parse(one_stage(*WAIT_END, goal={"segment": "retired"}),
                               segments={"retired", "members"}))
    new = journey_source(parse(one_stage(*WAIT_END)))
    defs = from_records([MEMBERS, ("journey:j:v1", old), ("journey:j:v2", new)])
    assert defs.journey_versions["j"][1].goal == InSegment("retired")
    with pytest.raises(DefinitionError) as info:
        from_records([MEMBERS, ("journey:j:v1", new), ("journey:j:v2", old)])
    assert info.value.errors == [("journey:j:v2.goal", "unknown segment 'retired'")]


def test_an_old_version_is_still_checked_for_everything_but_references():
    new = journey_source(parse(one_stage(*WAIT_END)))
    broken = dict(new, reentry="sometimes")
    with pytest.raises(DefinitionError) as info:
        from_records([MEMBERS, ("journey:j:v1", broken), ("journey:j:v2", new)])
    assert info.value.errors == [
        ("journey:j:v1.reentry", "expected one of none, unless_goal, always, got 'sometimes'")]


@pytest.mark.parametrize("key, body, problem", [
    ("journey:j:v0", {"id": "j"}, "expected journey:<id> or journey:<id>:v<N> (N from 1)"),
    ("journey:j:2", {"id": "j"}, "expected journey:<id> or journey:<id>:v<N> (N from 1)"),
    ("journey:j:v1", {"id": "k"}, "the record's definition has id 'k'"),
    ("journey:j", {"id": "k"}, "the record's definition has id 'k'"),
])
def test_a_journey_record_must_name_its_journey_and_version(key, body, problem):
    with pytest.raises(DefinitionError) as info:
        from_records([(key, body)])
    assert info.value.errors == [(key, problem)]


# ---------------------------------------------------------------- the JSON Schema

SCHEMA = json.loads((ROOT / "schemas" / "journey.schema.json").read_text())
# The keywords the walker below understands; annotations are read by editors only.
VALIDATING = {"$ref", "type", "enum", "const", "pattern", "minimum", "minItems", "uniqueItems",
              "items", "properties", "required", "additionalProperties", "minProperties",
              "maxProperties", "dependentRequired", "dependentSchemas", "oneOf", "anyOf", "not"}
ANNOTATIONS = {"$schema", "$defs", "title", "description", "default", "format"}
JSON_TYPES = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "integer": lambda v: type(v) is int,
              "number": lambda v: type(v) in (int, float), "boolean": lambda v: type(v) is bool,
              "null": lambda v: v is None}


def _same(a, b) -> bool:
    return (type(a) is bool) == (type(b) is bool) and a == b  # JSON: true is not 1


def schema_errors(value, schema: dict, at: str = "$") -> list[str]:
    """The ways `value` breaks `schema` (the subset of draft 2020-12 in VALIDATING)."""
    errors = []
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        errors += schema_errors(value, SCHEMA["$defs"][name], at)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(JSON_TYPES[t](value) for t in types):
            return errors + [f"{at}: not {' or '.join(types)}"]
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{at}: not one of {schema['enum']}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{at}: not {schema['const']!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{at}: does not match {schema['pattern']}")
    if JSON_TYPES["number"](value) and value < schema.get("minimum", value):
        errors.append(f"{at}: below {schema['minimum']}")
    if isinstance(value, list):
        errors += _array_errors(value, schema, at)
    if isinstance(value, dict):
        errors += _object_errors(value, schema, at)
    errors += _combined_errors(value, schema, at)
    return errors


def _array_errors(value: list, schema: dict, at: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{at}: fewer than {schema['minItems']} items")
    if schema.get("uniqueItems") and any(_same(a, b) for i, a in enumerate(value)
                                         for b in value[i + 1:]):
        errors.append(f"{at}: items repeat")
    for i, item in enumerate(value):
        if "items" in schema:
            errors += schema_errors(item, schema["items"], f"{at}[{i}]")
    return errors


def _object_errors(value: dict, schema: dict, at: str) -> list[str]:
    errors = [f"{at}: missing {key}" for key in schema.get("required", []) if key not in value]
    if not schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", len(value)):
        errors.append(f"{at}: wrong number of keys")
    properties, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(item, properties[key], f"{at}.{key}")
        elif extra is False:
            errors.append(f"{at}: unknown key {key}")
        elif isinstance(extra, dict):
            errors += schema_errors(item, extra, f"{at}.{key}")
    for key, needed in schema.get("dependentRequired", {}).items():
        if key in value:
            errors += [f"{at}: {key} needs {n}" for n in needed if n not in value]
    for key, sub in schema.get("dependentSchemas", {}).items():
        if key in value:
            errors += schema_errors(value, sub, at)
    return errors


def _combined_errors(value, schema: dict, at: str) -> list[str]:
    errors = []
    if "oneOf" in schema:
        passing = sum(not schema_errors(value, sub, at) for sub in schema["oneOf"])
        if passing != 1:
            errors.append(f"{at}: matches {passing} of oneOf, not exactly 1")
    if "anyOf" in schema and all(schema_errors(value, sub, at) for sub in schema["anyOf"]):
        errors.append(f"{at}: matches none of anyOf")
    if "not" in schema and not schema_errors(value, schema["not"], at):
        errors.append(f"{at}: matches what `not` excludes")
    return errors


def _keywords(schema) -> set[str]:
    """Every keyword used anywhere in the schema (property names are not keywords)."""
    if isinstance(schema, list):
        return set().union(*map(_keywords, schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, sub in schema.items():
        if key in ("properties", "$defs", "dependentSchemas"):
            found |= set().union(*map(_keywords, sub.values())) if sub else set()
        elif key not in ("enum", "const", "required", "dependentRequired", "default"):
            found |= _keywords(sub)
    return found


def example_file() -> dict:
    """examples/definitions.yaml with the two journeys of this file (and a churned segment)."""
    doc = yaml.safe_load((ROOT / "examples" / "definitions.yaml").read_text())
    doc["segments"].append({"id": "churned", "condition": {"since.last_seen": {"gt": "90d"}}})
    doc["journeys"] = [raw(ONBOARDING), raw(CART_RECOVERY)]
    return doc


def test_the_schema_is_draft_2020_12_and_the_walker_knows_all_its_keywords():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert _keywords(SCHEMA) <= VALIDATING | ANNOTATIONS, _keywords(SCHEMA) - VALIDATING


def test_the_example_definitions_and_journeys_are_valid_for_the_schema_and_the_loader():
    doc = example_file()
    assert schema_errors(doc, SCHEMA) == []
    assert [j.id for j in load_definitions(doc).journeys] == ["onboarding", "cart_recovery"]


def test_the_schema_lists_the_kinds_modes_days_and_keys_of_the_loader():
    defs = SCHEMA["$defs"]
    assert defs["step"]["properties"]["kind"]["enum"] == list(STEP_KINDS)
    assert [defs[f"{k}Step"]["properties"]["kind"]["const"] for k in STEP_KINDS] == \
        list(STEP_KINDS)
    assert defs["journey"]["properties"]["reentry"]["enum"] == list(REENTRY_MODES)
    assert defs["waitStep"]["properties"]["days"]["items"]["enum"] == list(WEEKDAYS)
    assert tuple(defs["journey"]["properties"]) == JOURNEY_KEYS
    assert tuple(defs["stage"]["properties"]) == STAGE_KEYS
    for kind in STEP_KINDS:
        assert tuple(defs[f"{kind}Step"]["properties"]) == STEP_KEYS[kind], kind
        assert defs[f"{kind}Step"]["additionalProperties"] is False


def _edit(change):
    doc = example_file()
    change(doc["journeys"][0])
    return doc


def _step(journey: dict, step_id: str) -> dict:
    return next(s for st in journey["stages"] for s in st["steps"] if s["id"] == step_id)


@pytest.mark.parametrize("change", [
    pytest.param(lambda j: _step(j, "wait1").update(destination="email"), id="unknown-step-key"),
    pytest.param(lambda j: _step(j, "wait1").update(kind="sleep"), id="unknown-kind"),
    pytest.param(lambda j: _step(j, "weekday").update(days=["mon", "funday"]), id="bad-day"),
    pytest.param(lambda j: _step(j, "weekday").update(days=["mon", "mon"]), id="repeated-day"),
    pytest.param(lambda j: _step(j, "wait1").update(days=["mon"]), id="two-kinds-of-wait"),
    pytest.param(lambda j: _step(j, "nudge").pop("timeout"), id="condition-without-timeout"),
    pytest.param(lambda j: _step(j, "wait1").update(timeout="1d"), id="timeout-alone"),
    pytest.param(lambda j: _step(j, "wait1").update(duration="0d"), id="zero-duration"),
    pytest.param(lambda j: _step(j, "until_date").update(until="2026-12-24"), id="until-no-time"),
    pytest.param(lambda j: _step(j, "bye").update(next="hello"), id="end-with-next"),
    pytest.param(lambda j: _step(j, "go").update(journey="other"), id="jump-to-both"),
    pytest.param(lambda j: _step(j, "offer")["variants"].pop(), id="one-variant"),
    pytest.param(lambda j: _step(j, "check").pop("else"), id="decision-without-else"),
    pytest.param(lambda j: _step(j, "hello").update(payload={"a": {"b": 1}}), id="nested-payload"),
    pytest.param(lambda j: j.update(reentry="none"), id="cooldown-without-reentry"),
    pytest.param(lambda j: j.pop("goal"), id="unless-goal-without-goal"),
    pytest.param(lambda j: j.update(reentry="never"), id="reentry-mode"),
    pytest.param(lambda j: j.pop("entry"), id="no-entry"),
    pytest.param(lambda j: j.update(stages=[]), id="no-stages"),
    pytest.param(lambda j: j.update(id="on boarding"), id="bad-id"),
    pytest.param(lambda j: j["stages"][0].update(name="Welcome"), id="unknown-stage-key"),
    pytest.param(lambda j: j.update(goal={"segment": "a", "all": []}), id="two-key-condition"),
])
def test_the_schema_refuses_what_the_loader_refuses(change):
    doc = _edit(change)
    assert schema_errors(doc, SCHEMA) != []
    with pytest.raises(DefinitionError):
        load_definitions(doc)


def test_the_schema_refuses_an_unknown_top_level_key():
    doc = example_file()
    doc["campaigns"] = []
    assert schema_errors(doc, SCHEMA) == ["$: unknown key campaigns"]
