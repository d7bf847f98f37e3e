"""Output ids a consumer can keep for ever (state.output_ids, README "Output ids"): over random
input sequences (events, identifies and their merges, batch audience runs, journey wake-ups and
segments that follow the clock) no id contains `None`, every id is unique, the same inputs make
the same ids again (a replay), and another generation (another app, recreated topics) makes
other ids for the same inputs."""
from __future__ import annotations

import base64
import random

import pytest

from sidecar.audiences import AudienceRun, records
from state.definitions import load_definitions
from state.durations import DAY, HOUR, MINUTE
from state.output_ids import GENERATION_CHARS, merge_id, source, text
from state.processing import PROFILE_INPUTS, step, waits
from state.time_changes import SEGMENTS_WAKEUP
from tests.unit.test_processing import T0, JsonWire, loads
from topology.machinery.topic_ids import as_text

DEFS = load_definitions("""
segments:
  - {id: cart_abandoners, condition: {all: [{count.add_to_cart: {gte: 1}},
                                            {since.add_to_cart: {lt: 2d}}]}}
  - {id: lapsed, condition: {since.last_seen: {gt: 7d}}}
  - {id: buyer, condition: {count.purchase: {gte: 1}}}
  - {id: vip, sql: "SELECT profile_id FROM events WHERE name = 'purchase'"}
deliveries:
  - {id: banner, segment: cart_abandoners, trigger: {event.name: {eq: view}}}
journeys:
  - id: onboarding
    entry: {segment: buyer}
    stages:
      - id: first
        steps:
          - {id: rest, kind: wait, duration: 1d, next: nudge}
          - {id: nudge, kind: activation, destination: push, next: bye}
          - {id: bye, kind: end}
""")
VISITORS = ("v1", "v2", "v3")
MEMBERS = ("u1", "u2")
ID_FIELDS = {"segment-changes": "change_id", "activations": "activation_id",
             "journey-transitions": "transition_id", "identity-merges": "merge_id"}


class Wire(JsonWire):
    def __init__(self, generation: str) -> None:
        self.generation = generation


class World:
    """Profiles fed as a worker feeds them, in one profile-inputs partition: the identity step's
    routing (aliases; an identify's barrier at the member, then the hand-over through the
    visitor), the sidecar's audience runs and the timer's wake-ups. `made` is every output
    record, in the order made, as (topic, record)."""

    def __init__(self, generation: str) -> None:
        self.wire = Wire(generation)
        self.profiles: dict[str, dict] = {}
        self.alias: dict[str, str] = {}
        self.offset = 0  # on profile-inputs
        self.position = 0  # on the events topic (one partition)
        self.runs = 0
        self.made: list[tuple[str, dict]] = []

    def feed(self, record: dict) -> None:
        pid = record["profile_id"]
        self.profiles[pid], sends = step(self.profiles.get(pid), record, self.offset, None,
                                         DEFS, self.wire)
        self.offset += 1
        for s in sends:
            if s["topic"] == PROFILE_INPUTS:  # a hand-over, or an input forwarded to a member
                self.feed(loads(s["value"]))
            else:
                self.made.append((s["topic"], loads(s["value"])))

    def event(self, name: str, t: int, visitor: str | None, user: str | None) -> None:
        offset, self.position = self.position, self.position + 1
        ev = {"event_id": f"e-{offset}", "name": name, "visitor_id": visitor, "user_id": user,
              "time": t, "request_id": None, "values": {}}
        base = {"kind": "event", "source_partition": 0, "source_offset": offset, "event": ev,
                "visitor_id": None, "member_id": None, "merge_id": None, "state": None}
        if name == "identify" and self.alias.get(visitor) != user:
            self.alias[visitor] = user
            merge = merge_id(self.wire.generation, visitor, user, 0, offset)
            self.made.append(("identity-merges", {"merge_id": merge}))
            self.feed({**base, "kind": "identify", "profile_id": user, "visitor_id": visitor,
                       "merge_id": merge})
            self.feed({**base, "kind": "merge_out", "profile_id": visitor, "event": None,
                       "visitor_id": visitor, "member_id": user, "merge_id": merge})
            return
        self.feed({**base, "profile_id": user or self.alias.get(visitor) or visitor})

    def audience(self, pid: str, member: bool, t: int) -> None:
        self.runs += 1
        run = AudienceRun("vip", self.runs, 1, [pid] if member else [], [] if member else [pid])
        for _, record in records(run, t):
            self.feed(record)

    def wake(self, now: int) -> None:
        """Every wait due by `now`, earliest first, as the timer sends them."""
        while True:
            due = sorted((d, pid, journey, seq) for pid, p in self.profiles.items()
                         for journey, seq, d in waits(p) if d <= now)
            if not due:
                return
            d, pid, journey, seq = due[0]
            self.feed({"kind": "wakeup", "profile_id": pid, "source_partition": -1,
                       "source_offset": -1, "event": None, "visitor_id": None,
                       "member_id": None, "merge_id": None, "state": None, "journey": journey,
                       "seq": seq, "due": d})

    def ids(self) -> list[str]:
        return [record[ID_FIELDS[topic]] for topic, record in self.made]


def run(seed: int, generation: str = "gen-a", steps: int = 120) -> World:
    rng = random.Random(seed)
    world = World(generation)
    t = T0
    for _ in range(steps):
        t += rng.choice((MINUTE, HOUR, DAY, 3 * DAY, 9 * DAY))
        action = rng.random()
        if action < 0.5:
            user = rng.choice((None, None) + MEMBERS)
            world.event(rng.choice(("view", "add_to_cart", "purchase")), t,
                        rng.choice(VISITORS), user)
        elif action < 0.6:
            world.event("identify", t, rng.choice(VISITORS), rng.choice(MEMBERS))
        elif action < 0.7:
            world.audience(rng.choice(VISITORS + MEMBERS), rng.random() < 0.6, t)
        else:
            world.wake(t)
    world.wake(t + 30 * DAY)
    return world


SEEDS = range(12)


def _cause(output_id: str) -> str:
    return output_id.split("/")[2].split(":")[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_no_output_id_contains_none_and_each_is_unique(seed):
    world = run(seed)
    made = world.ids()
    assert made
    assert [i for i in made if "None" in i] == []
    assert all(i.startswith("gen-a/") for i in made)
    assert len(set(made)) == len(made)


def test_the_random_inputs_make_outputs_of_every_cause():
    """The sequences above reach every kind of cause, so the test covers each."""
    causes = {_cause(i) for seed in SEEDS for i in run(seed).ids() if "@" not in i}
    assert causes == {"event", "wakeup", "time", "audience", "merge"}
    kinds = {topic for seed in SEEDS for topic, _ in run(seed).made}
    assert kinds == set(ID_FIELDS)


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_a_replay_makes_the_same_ids(seed):
    """Ids are functions of the inputs and the generation: nothing random, no wall clock."""
    assert run(seed).made == run(seed).made


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_another_generation_makes_other_ids_for_the_same_inputs(seed):
    first, second = run(seed, "gen-a"), run(seed, "gen-b")
    assert set(first.ids()).isdisjoint(second.ids())
    assert [i.replace("gen-b/", "gen-a/", 1) for i in second.ids()] == first.ids()


def test_a_transition_without_from_or_to_has_an_empty_part():
    world = World("g")
    world.event("purchase", T0, None, "u1")
    entered = [r["transition_id"] for topic, r in world.made if topic == "journey-transitions"
               and r["kind"] == "entered_journey"]
    assert entered == ["g/u1/event:e-0/journey/onboarding/entered_journey//onboarding"]


def test_the_parts_of_an_id():
    assert source("g", "p1", "event", "e-1") == "g/p1/event:e-1"
    assert source("g", "p1", "wakeup", "j", 3) == "g/p1/wakeup:j:3"
    assert source("g", "p1", "merge", 2, 10) == "g/p1/merge:2:10"
    assert source("g", "p1", "time", None) == "g/p1/time:"
    assert merge_id("g", "v1", "u1", 2, 10) == "g/v1>u1@2:10"
    assert text(None) == "" and text(0) == "0"
    assert SEGMENTS_WAKEUP.startswith("@")


def test_the_generation_is_a_prefix_of_the_topic_id_as_kafka_prints_it():
    raw = bytes(range(16))
    printed = as_text(raw)
    assert len(printed) == 22 and "=" not in printed
    assert base64.urlsafe_b64decode(printed + "==") == raw
    assert GENERATION_CHARS == 11


def test_a_broker_without_topic_ids_gives_the_app_id(monkeypatch, caplog):
    from cjo.settings import Settings
    from topology.machinery import topic_ids
    from topology.pipeline.topics import generation

    async def no_id(bootstrap_servers, topic, timeout=30.0):
        return None

    async def an_id(bootstrap_servers, topic, timeout=30.0):
        return "p_NsH3h3Tx2kdEK-dmTr4Q"

    settings = Settings().with_(app_id="shop")
    monkeypatch.setattr(topic_ids, "topic_id", no_id)
    assert generation(settings) == "shop"
    assert "no topic ids" in caplog.text
    monkeypatch.setattr(topic_ids, "topic_id", an_id)
    assert generation(settings) == "p_NsH3h3Tx2"
