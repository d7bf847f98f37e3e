"""The first path through the topology, end to end on the real broker: events keyed by user
id are counted per user in a RocksDB-backed table, one output per event, in each user's order."""
import asyncio
from collections import Counter, defaultdict

from cjo.kafka_io import produce, read_topic
from cjo.workload import Workload
from topology.topics import ensure_topics


def test_counts_per_user_in_order(settings, workers):
    ensure_topics(settings)
    log = Workload(seed=3, users=50).events(1000)
    assert len({r["user_id"] for _, r in log}) == 50
    asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"), "event", log))

    worker = workers()
    outputs = asyncio.run(read_topic(settings.bootstrap_servers, settings.topic("event-counts"),
                                     "event_counted", expect=1000, timeout=120,
                                     alive=worker.running))
    assert len(outputs) == 1000, worker.log_tail()

    by_user = defaultdict(list)
    for out in outputs:  # per partition in offset order, so per user in output order
        by_user[out.value["user_id"]].append(out.value)
    expected = defaultdict(list)
    for _, record in log:
        expected[record["user_id"]].append(record["event_id"])

    assert {u: len(v) for u, v in by_user.items()} == Counter(r["user_id"] for _, r in log)
    for user, outs in by_user.items():
        assert [o["event_id"] for o in outs] == expected[user], f"{user}: out of order"
        assert [o["count"] for o in outs] == list(range(1, len(outs) + 1)), user
    # Output ids are derived from the input position: unique, and stable for a redelivery.
    ids = [o.value["output_id"] for o in outputs]
    assert len(set(ids)) == 1000
    assert all(i.startswith(settings.topic("events") + ":") for i in ids)


def test_a_restarted_worker_continues_from_its_table(settings, workers):
    """State survives a clean restart: the table is recovered and counting goes on."""
    ensure_topics(settings)
    workload = Workload(seed=4, users=10)
    log = workload.events(400)
    first, second = log[:200], log[200:]
    bootstrap, events, counts = (settings.bootstrap_servers, settings.topic("events"),
                                 settings.topic("event-counts"))
    asyncio.run(produce(bootstrap, events, "event", first))
    w = workers()
    got = asyncio.run(read_topic(bootstrap, counts, "event_counted", 200, 120, w.running))
    assert len(got) == 200, w.log_tail()
    assert w.stop() == 0, w.log_tail()

    asyncio.run(produce(bootstrap, events, "event", second))
    w2 = workers()
    got = asyncio.run(read_topic(bootstrap, counts, "event_counted", 400, 120, w2.running))
    assert len(got) == 400, w2.log_tail()
    final = {}
    for out in got:
        final[out.value["user_id"]] = max(final.get(out.value["user_id"], 0), out.value["count"])
    assert final == dict(Counter(r["user_id"] for _, r in log))
