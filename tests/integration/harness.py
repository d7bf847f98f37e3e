"""Driving a real worker in tests: produce, wait until processed, read what came out."""
from __future__ import annotations

import asyncio
from collections import defaultdict

from cjo.kafka_io import produce, read_all, wait_until_caught_up
from cjo.settings import Settings
from cjo.web_client import get_json


def start_against_model(settings: Settings, workers, tmp_path, definitions: str,
                        start_ms: int):
    """(clock, model, worker): `definitions` applied, a worker whose clock (a file) stands at
    `start_ms`, and the reference model of the same definitions."""
    from cjo.clock import Clock
    from state.definitions import load_definitions
    from tests.model import ReferenceModel
    from topology.pipeline.definitions import apply_definitions
    from topology.pipeline.topics import ensure_topics, generation

    clock = Clock(str(tmp_path / "clock"))
    clock.set(start_ms)
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, definitions))
    model = ReferenceModel(load_definitions(definitions), generation(settings))
    worker = workers(settings, extra_env={"CJO_CLOCK_FILE": clock.path})
    return clock, model, worker


def send_to_both(settings: Settings, model, log) -> None:
    """Produce `log` and apply it to the reference model at the positions it got."""
    for (partition, offset), (_, event) in zip(send_events(settings, log), log):
        model.apply(partition, offset, event)


def send_events(settings: Settings, log) -> list[tuple[int, int]]:
    return asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"), "event", log))


def send_raw(settings: Settings, records) -> list[tuple[int, int]]:
    return asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"), None,
                               records))


def wait_processed(settings: Settings, worker, timeout: float = 120.0) -> None:
    ok = asyncio.run(wait_until_caught_up(
        settings.bootstrap_servers, settings.app_id,
        [settings.topic("events"), settings.topic("profile-inputs")],
        timeout=timeout, alive=worker.running))
    assert ok, "the worker did not catch up:\n" + worker.log_tail()


def outputs(settings: Settings, topic: str, schema: str, id_field: str):
    """(records by id, per-profile id sequences, duplicates) of an output topic. A duplicate
    must be identical to the first copy (deterministic ids). A record without a profile id
    (an identity merge) is in the sequence of its key (the member)."""
    reads = asyncio.run(read_all(settings.bootstrap_servers, settings.topic(topic), schema))
    by_id: dict[str, dict] = {}
    sequence = defaultdict(list)
    duplicates = 0
    for r in reads:
        rid = r.value[id_field]
        if rid in by_id:
            assert by_id[rid] == r.value, f"two different records with id {rid}"
            duplicates += 1
            continue
        by_id[rid] = r.value
        profile = r.value["profile_id"] if "profile_id" in r.value else r.key.decode()
        sequence[profile].append(rid)
    return by_id, dict(sequence), duplicates


def same_as_model(settings: Settings, model, topics) -> bool:
    """Whether each output topic of `topics` ((topic, schema, id field)) holds, by id, what
    the reference model made."""
    for topic, schema, id_field in topics:
        by_id, _, _ = outputs(settings, topic, schema, id_field)
        if by_id != {r[id_field]: r for r in model.outputs[topic]}:
            return False
    return True


def table(settings: Settings, name: str, schema: str) -> dict[str, dict]:
    """The latest value per key of a table's changelog topic."""
    reads = asyncio.run(read_all(settings.bootstrap_servers,
                                 f"{settings.app_id}-{name}-changelog", schema))
    latest = {}
    for r in reads:
        latest[r.key.decode()] = r.value
    return latest


def stats(settings: Settings, worker, timeout: float = 60.0) -> dict:
    """The worker's /stats/ view, waiting for its web server to come up."""
    import time
    import urllib.error

    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_json(settings, "/stats/")
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or not worker.running():
                raise AssertionError("the worker's web view did not answer:\n"
                                     + worker.log_tail()) from None
            time.sleep(0.3)
