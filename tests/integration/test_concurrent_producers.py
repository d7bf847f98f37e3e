"""What order holds across an identify, with concurrent producers (issue 19, part 1; README
"How it works", "Merges before what follows them"; docs/producers.md, "Order").

Four producer tasks, each with its own connection, own disjoint sets of people and send their
events interleaved and back to back, never waiting for an acknowledgement. Every case README
promises is checked against the reference model, which applies each person's events in the
order sent with the merge at the identify: every segment change and activation of those people
(their ids name their causes) is the model's, 0 wrong causes, and none of them counts a merge
crossing. The case README does not promise, events under the member's own key sent around the
identify, is set up so that at least one of each person's events lands on the wrong side of
the merge in event time whatever the arrival order, and the worker counts it
(`merge_crossings`).

The promised cases:

- `visitor`: one key, a visitor's events only (no identify);
- `member`: one key, a member's events only;
- `alias`: a visitor's events, its identify, then more events under the visitor's key with the
  visitor id only (the alias takes them to the member);
- `both`: a visitor's events, one with both ids, the identify, then events with both ids under
  the visitor's key;
- `history`: like `alias`, for a member whose own events (under its key) the worker applied
  before the identify was sent.

Not promised (`racing`): a visitor's events, a member-key event timed after the identify but
sent before it, the identify, a member-key event timed before the identify but sent after it,
then more member-key events: whichever comes first to the member, the barrier or the early
member event, one of the two member events crosses the merge.
"""
from __future__ import annotations

import asyncio
import random
import time

from cjo.producer import EventProducer
from cjo.web_client import call
from state.durations import MINUTE
from tests.integration.harness import outputs, stats, table, wait_processed
from tests.integration.harness import send_to_both, start_against_model
from topology.pipeline.identity import murmur2_partition

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFINITIONS = """
segments:
  - {id: fans, condition: {count.view: {gte: 3}}}
  - {id: big_fans, condition: {count.view: {gte: 6}}}
deliveries:
  - {id: ping, segment: fans, trigger: {event.name: {eq: view}}}
"""
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("activations", "activation", "activation_id"))
TASKS = 4
PER_CASE = 4  # people of each case per task
PROMISED = ("visitor", "member", "alias", "both", "history")


def _event(eid: str, name: str, t: int, visitor=None, user=None) -> tuple[bytes, dict]:
    key = (visitor or user).encode()  # the visitor id when the event has one
    return key, {"event_id": eid, "name": name, "visitor_id": visitor, "user_id": user,
                 "time": t, "request_id": None, "values": {}}


def _person(case: str, task: int, i: int, partitions: int) -> tuple[str, str, list, list]:
    """(visitor id, member id, events sent before the concurrent phase, concurrent events)
    of one person, in the order its producer sends them."""
    v, u = f"v-{case}-{task}-{i}", f"u-{case}-{task}-{i}"
    if case == "racing":  # the member's key on another partition than the visitor's
        while murmur2_partition(u.encode(), partitions) == murmur2_partition(v.encode(),
                                                                              partitions):
            u += "x"
    k = 1 + (task + i) % 4  # the visitor's views before the identify: 1 to 4
    n = iter(range(100))

    def at() -> int:
        return START + next(n) * MINUTE

    def views(count: int, **ids) -> list:
        return [_event(f"{v}-{next(serial)}", "view", at(), **ids) for _ in range(count)]

    serial = iter(range(100))
    before: list = []
    if case == "visitor":
        return v, u, before, views(6, visitor=v)
    if case == "member":
        return v, u, before, views(6, user=u)
    if case == "history":
        before = views(2, user=u)
    sent = views(k, visitor=v)
    if case == "both":
        sent += views(1, visitor=v, user=u)
    if case == "racing":
        identify_at = START + (k + 1) * MINUTE
        return v, u, before, sent + [
            _event(f"{v}-future", "view", identify_at + MINUTE, user=u),
            _event(f"{v}-identify", "identify", identify_at, visitor=v, user=u),
            _event(f"{v}-past", "view", identify_at - MINUTE, user=u),
            _event(f"{v}-after-1", "view", identify_at + 2 * MINUTE, user=u),
            _event(f"{v}-after-2", "view", identify_at + 3 * MINUTE, user=u)]
    sent.append(_event(f"{v}-identify", "identify", at(), visitor=v, user=u))
    after = {"alias": {"visitor": v}, "history": {"visitor": v},
             "both": {"visitor": v, "user": u}}[case]
    return v, u, before, sent + views(3, **after)


async def _produce(bootstrap: str, topic: str, people: list[list], seed: int) -> list:
    """One producer task: its people's events interleaved at random (each person's in order),
    sent back to back; returns [((partition, offset), (key, event))] in the order sent."""
    rnd = random.Random(seed)
    queues = [list(p) for p in people if p]
    sent, futures = [], []
    async with EventProducer(bootstrap, topic) as producer:
        while queues:
            q = rnd.choice(queues)
            key, e = q.pop(0)
            if not q:
                queues.remove(q)
            futures.append(await producer.send(e, key=key, check=False))
            sent.append((key, e))
            await asyncio.sleep(0)  # let the other tasks send too: no pause
        metas = await asyncio.gather(*futures)
    return [((m.partition, m.offset), s) for m, s in zip(metas, sent)]


async def _concurrently(bootstrap: str, topic: str, tasks: list[list[list]]) -> list[list]:
    return await asyncio.gather(*(_produce(bootstrap, topic, people, 19 + n)
                                  for n, people in enumerate(tasks)))


def test_concurrent_producers_promised_cases_exact_and_the_others_counted(settings, workers,
                                                                        tmp_path):
    clock, model, worker = start_against_model(settings, workers, tmp_path, DEFINITIONS, START)
    cases = (*PROMISED, "racing")
    people = {(case, t, i): _person(case, t, i, settings.partitions)
              for case in cases for t in range(TASKS) for i in range(PER_CASE)}

    # The `history` members' own events, applied before any identify is sent.
    send_to_both(settings, model, [e for (_, _, before, _) in people.values() for e in before])
    wait_processed(settings, worker)

    tasks = [[p[3] for (case, t, i), p in people.items() if t == n] for n in range(TASKS)]
    started = time.monotonic()
    logs = asyncio.run(_concurrently(settings.bootstrap_servers, settings.topic("events"),
                                     tasks))
    for log in logs:  # each person's events in the order its producer sent them
        for (partition, offset), (_, e) in log:
            model.apply(partition, offset, e)
    wait_processed(settings, worker)

    promised = {pid for (case, _, _), (v, u, _, _) in people.items() if case in PROMISED
                for pid in (v, u)}
    racing = {u: v for (case, _, _), (v, u, _, _) in people.items() if case == "racing"}

    def wrong_causes() -> list[str]:
        """Output ids (each names its cause) of the promised people that the worker made and
        the model did not, or the other way round, or whose records differ."""
        wrong = []
        for topic, schema, id_field in OUTPUTS:
            by_id, _, _ = outputs(settings, topic, schema, id_field)
            mine = {i: r for i, r in by_id.items() if r["profile_id"] in promised}
            expected = {r[id_field]: r for r in model.outputs[topic]
                        if r["profile_id"] in promised}
            wrong += sorted(i for i in mine.keys() | expected.keys()
                            if mine.get(i) != expected.get(i))
        return wrong

    deadline = time.monotonic() + 60
    while wrong_causes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert wrong_causes() == []
    checked = sum(1 for topic, _, _ in OUTPUTS for r in model.outputs[topic]
                  if r["profile_id"] in promised)
    assert checked > 100  # entries, exits and activations of the promised people

    profiles = table(settings, "profiles", "profile")
    assert all(profiles[pid]["merge_crossings"] == 0 for pid in promised if pid in profiles)
    for u, v in racing.items():
        assert profiles[u]["merge_crossings"] >= 1, (u, profiles[u]["merge_crossings"])
        assert profiles[u]["counts"]["view"] == sum(1 for (_, e) in people_events(people, v)
                                                    if e["name"] == "view")
        assert profiles[v]["merged_into"] == u
    crossings = sum(p["merge_crossings"] for p in profiles.values())
    assert crossings >= len(racing)
    while time.monotonic() < deadline and \
            stats(settings, worker).get("merge_crossings", 0) < crossings:
        time.sleep(0.3)
    assert stats(settings, worker)["merge_crossings"] == crossings
    status, _, body = call(settings, "/metrics", token="")
    assert status == 200 and f"cjo_merge_crossings_total {float(crossings)}" in body.decode()
    assert time.monotonic() - started < 240


def people_events(people: dict, visitor: str) -> list:
    for v, _, before, sent in people.values():
        if v == visitor:
            return before + sent
    return []
