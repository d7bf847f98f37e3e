"""Profiles with strong consistency, end to end on the real broker, compared with the
reference model (tests/model.py): thousands of events for hundreds of profiles, visitors
merging into members on other partitions, segments and deliveries judged on every event."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from cjo.workload import Workload
from state.definitions import load_definitions
from tests.integration.harness import outputs, send_events, table, wait_processed
from tests.model import ReferenceModel, comparable
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics, generation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "definitions.yaml"


def test_topology_equals_the_reference_model(settings, workers, still_clock):
    settings = settings.with_(commit_interval=0.5)
    ensure_topics(settings)
    source = EXAMPLES.read_text()
    asyncio.run(apply_definitions(settings, source))
    defs = load_definitions(source)
    model = ReferenceModel(defs, generation(settings))

    workload = Workload(seed=11, members=120, visitors_per_member=2, anonymous=150)
    rounds = workload.rounds(6, 700)
    worker = workers(settings, extra_env=still_clock)
    identifies = 0
    for log in rounds:
        positions = send_events(settings, log)
        for (partition, offset), (_, event) in zip(positions, log):
            model.apply(partition, offset, event)
            identifies += event["name"] == "identify"
        wait_processed(settings, worker)
    assert identifies >= 30  # merges really happened, interleaved with other traffic

    states = table(settings, "profiles", "profile")
    expected = model.states()
    assert len(expected) > 300
    mismatched = [pid for pid in expected
                  if pid not in states or comparable(states[pid]) != expected[pid]]
    assert not mismatched, (
        f"{len(mismatched)} profiles differ, e.g. {mismatched[0]}:\n"
        f"stream: {comparable(states[mismatched[0]]) if mismatched[0] in states else None}\n"
        f"model:  {expected[mismatched[0]]}")
    assert set(states) == set(expected)

    for topic, schema, id_field in (("segment-changes", "segment_change", "change_id"),
                                    ("activations", "activation", "activation_id")):
        by_id, sequence, _ = outputs(settings, topic, schema, id_field)
        model_records = {r[id_field]: r for r in model.outputs[topic]}
        assert len(model_records) == len(model.outputs[topic])  # the model's ids are unique
        assert by_id == model_records, f"{topic}: stream and model differ"
        model_sequence = defaultdict(list)
        for r in model.outputs[topic]:
            model_sequence[r["profile_id"]].append(r[id_field])
        assert sequence == dict(model_sequence), f"{topic}: per-profile order differs"
    assert model.outputs["activations"], "no delivery fired: the workload does not exercise them"
    merges, by_member, _ = outputs(settings, "identity-merges", "identity_merge", "merge_id")
    assert merges == {r["merge_id"]: r for r in model.outputs["identity-merges"]}
    assert sum(map(len, by_member.values())) >= 30
    assert any(r["caused_by"].count(">") for r in model.outputs["segment-changes"])
