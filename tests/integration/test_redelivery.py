"""Nothing applied twice, nothing lost: a worker killed before it committed its offsets gets
the same inputs again after a restart; they change nothing, and every output it sends again
carries an id already seen. The same holds when the worker also lost its local RocksDB files
and rebuilt them from the changelog."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from cjo.workload import Workload
from state.definitions import load_definitions
from tests.integration.harness import outputs, send_events, table, wait_processed
from tests.model import ReferenceModel, comparable
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics, generation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "definitions.yaml"
TOPICS = (("segment-changes", "segment_change", "change_id"),
          ("activations", "activation", "activation_id"),
          ("journey-transitions", "journey_transition", "transition_id"),
          ("identity-merges", "identity_merge", "merge_id"))


def _outputs_seen_so_far(settings):
    return {topic: set(outputs(settings, topic, schema, field)[0])
            for topic, schema, field in TOPICS}


@pytest.mark.parametrize("lose_local_state", [False, True], ids=["keep-rocksdb", "lose-rocksdb"])
def test_inputs_processed_twice_change_nothing(settings, workers, still_clock, lose_local_state):
    ensure_topics(settings)
    source = EXAMPLES.read_text()
    asyncio.run(apply_definitions(settings, source))
    model = ReferenceModel(load_definitions(source), generation(settings))
    rounds = Workload(seed=5, members=40, anonymous=40).rounds(4, 400)

    # A worker that never commits (the interval is longer than the test).
    first = workers(settings.with_(commit_interval=3600.0), extra_env=still_clock)
    for log in rounds:  # a round at a time, see cjo.workload
        positions = send_events(settings, log)
        for (partition, offset), (_, event) in zip(positions, log):
            model.apply(partition, offset, event)
        _wait_until_table_matches(settings, model.states(), first)
    expected_states = model.states()
    seen = _outputs_seen_so_far(settings)
    first.kill()  # kill -9: nothing committed, every input will come again
    if lose_local_state:
        shutil.rmtree(settings.worker_dir)

    second = workers(settings, extra_env=still_clock)
    wait_processed(settings, second)
    states = table(settings, "profiles", "profile")
    assert {pid: comparable(states[pid]) for pid in expected_states} == expected_states

    for topic, schema, field in TOPICS:
        by_id, _, duplicates = outputs(settings, topic, schema, field)
        assert set(by_id) == seen[topic], f"{topic}: the second pass made new outputs"
        assert by_id == {r[field]: r for r in model.outputs[topic]}
        assert duplicates > 0, f"{topic}: nothing was redelivered, the test proves nothing"


def _wait_until_table_matches(settings, expected, worker, timeout=120.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = table(settings, "profiles", "profile")
        if all(pid in states and comparable(states[pid]) == state
               for pid, state in expected.items()):
            return
        assert worker.running(), worker.log_tail()
        time.sleep(0.5)
    raise AssertionError("the first worker did not process everything:\n" + worker.log_tail())
