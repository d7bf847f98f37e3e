"""Output ids across app instances and topic generations, on the real broker: two apps fed the
same events make the same outputs under other ids (each with its own generation: the first
characters of its events topic's Kafka topic id), and an app whose topics are deleted and
created again gets a new generation (README "Output ids")."""
from __future__ import annotations

import asyncio
import time

from deploy.ports import free_port
from tests.integration.harness import outputs, send_events, wait_processed
from topology.machinery.topic_ids import topic_id
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import delete_topics, ensure_topics, generation

DEFINITIONS = """
segments:
  - {id: viewer, condition: {count.view: {gte: 1}}}
  - {id: buyer, condition: {count.purchase: {gte: 1}}}
deliveries:
  - {id: banner, segment: viewer, trigger: {event.name: {eq: view}}}
journeys:
  - {id: thanks, entry: {segment: buyer}, stages: [{id: first, steps: [
      {id: mail, kind: activation, destination: email, next: bye}, {id: bye, kind: end}]}]}
"""
ID_FIELDS = (("segment-changes", "segment_change", "change_id"),
             ("activations", "activation", "activation_id"),
             ("journey-transitions", "journey_transition", "transition_id"),
             ("identity-merges", "identity_merge", "merge_id"))
NOW = int(time.time() * 1000) - 3_600_000


def _log() -> list[tuple[bytes, dict]]:
    def event(n: int, name: str, visitor: str | None, user: str | None) -> tuple[bytes, dict]:
        return ((visitor or user).encode(),
                {"event_id": f"ev-{n}", "name": name, "visitor_id": visitor, "user_id": user,
                 "time": NOW + n, "request_id": None, "values": {}})
    return [event(1, "view", "v-1", None), event(2, "view", "v-2", None),
            event(3, "identify", "v-1", "u-1"), event(4, "purchase", None, "u-1"),
            event(5, "view", "v-1", None), event(6, "purchase", "v-2", None)]


def _ids(settings) -> list[str]:
    made = []
    for topic, schema, field in ID_FIELDS:
        by_id, _, _ = outputs(settings, topic, schema, field)
        made += by_id
    return made


def _run(settings, workers) -> list[str]:
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, DEFINITIONS))
    worker = workers(settings)
    send_events(settings, _log())
    wait_processed(settings, worker)
    worker.stop()
    return _ids(settings)


def test_two_apps_make_other_ids_for_the_same_events(settings, workers):
    other = settings.with_(app_id=settings.app_id + "-b", web_port=free_port())
    first, second = _run(settings, workers), _run(other, workers)
    ours, theirs = generation(settings), generation(other)
    assert ours != theirs and len(ours) == len(theirs) == 11
    assert ours == asyncio.run(topic_id(settings.bootstrap_servers,
                                        settings.topic("events")))[:11]
    kinds = {i.split("/")[2].split(":")[0] for i in first if "@" not in i}
    assert kinds == {"event", "merge"} and any("@" in i for i in first)  # a merge id too
    assert all(i.startswith(ours + "/") for i in first)
    assert all(i.startswith(theirs + "/") for i in second)
    assert not any("None" in i for i in first + second)
    assert set(first).isdisjoint(second)
    # The same events made the same outputs: only the generation differs.
    assert sorted(i.replace(theirs, ours, 1) for i in second) == sorted(first)


def test_topics_created_again_have_a_new_generation(settings):
    ensure_topics(settings)
    before = generation(settings)
    delete_topics(settings)
    deadline = time.monotonic() + 60
    while True:  # deletion completes after the call returns: until the topic is made anew
        try:
            if settings.topic("events") in ensure_topics(settings):
                break
        except Exception:  # still being deleted
            pass
        assert time.monotonic() < deadline, "the events topic was not created again"
        time.sleep(0.5)
    assert generation(settings) not in (before, settings.app_id)
