"""`cjo demo`: the whole path on the local broker, with a summary of what happened.

Starts the broker (installing Kafka on first use), creates a fresh app's topics, produces a
seeded workload, runs a worker until every event has its output, checks each user's count and
order, prints a summary, and stops what it started.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter, defaultdict

from cjo.kafka_io import produce, read_topic
from cjo.processes import WorkerProcess
from cjo.settings import Settings
from cjo.workload import Workload
from deploy.broker import BrokerError, LocalBroker
from topology import topics

DEMO_PREFIX = "cjo-demo-"


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(base: Settings, events: int, users: int) -> int:
    broker = LocalBroker.from_settings(base)
    started_broker = broker.pid() is None
    try:
        if not broker.installed():
            _say(f"Installing Apache Kafka {broker.version} from Maven Central (once)…")
            t0 = time.monotonic()
            broker.install()
            _say(f"  installed in {time.monotonic() - t0:.1f}s into {broker.lib_dir}")
        took = broker.start()
        _say(f"Broker: {broker.status()}" + (f", started in {took:.1f}s" if took else ""))
    except BrokerError as exc:
        _say(f"The broker could not start: {exc}")
        return 1

    settings = base.with_(app_id=f"{DEMO_PREFIX}{int(time.time())}")
    worker = None
    try:
        _forget_previous_demos(settings)
        topics.ensure_topics(settings)
        workload = Workload(seed=7, users=users)
        log = workload.events(events)
        t0 = time.monotonic()
        asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"), "event", log))
        _say(f"Produced {len(log):,} events for {users} users to {settings.topic('events')} "
             f"in {time.monotonic() - t0:.1f}s")

        log_path = settings.data_dir / "demo" / f"{settings.app_id}.worker.log"
        worker = WorkerProcess(settings, log_path).start()
        _say(f"Worker started (pid {worker.proc.pid}, log {log_path})")
        t0 = time.monotonic()
        outputs = asyncio.run(read_topic(settings.bootstrap_servers,
                                         settings.topic("event-counts"), "event_counted",
                                         expect=len(log), timeout=180,
                                         alive=worker.running))
        elapsed = time.monotonic() - t0
        if len(outputs) < len(log):
            _say(f"Only {len(outputs)} of {len(log)} outputs arrived; worker log:\n"
                 + worker.log_tail())
            return 1
        return _summarise(settings, log, outputs, elapsed)
    finally:
        if worker is not None:
            worker.stop()
            _say(f"Worker stopped (exit code {worker.proc.returncode})")
        if started_broker:
            broker.stop()
            _say("Broker stopped")


def _forget_previous_demos(settings: Settings) -> None:
    """Delete earlier demo runs' topics so that demos do not pile up on the broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            old = [t for t in await admin.list_topics() if t.startswith(DEMO_PREFIX)]
            if old:
                await admin.delete_topics(old)
        finally:
            await admin.close()

    asyncio.run(go())
    for old in (settings.data_dir / "workers").glob(DEMO_PREFIX + "*"):
        shutil.rmtree(old, ignore_errors=True)


def _summarise(settings: Settings, log, outputs, elapsed: float) -> int:
    produced = Counter(record["user_id"] for _, record in log)
    expected_order = defaultdict(list)
    for _, record in log:
        expected_order[record["user_id"]].append(record["event_id"])
    seen_order = defaultdict(list)
    final = {}
    per_partition = Counter()
    for out in outputs:
        v = out.value
        seen_order[v["user_id"]].append(v["event_id"])
        final[v["user_id"]] = max(final.get(v["user_id"], 0), v["count"])
        per_partition[out.partition] += 1

    wrong_counts = [u for u in produced if final.get(u) != produced[u]]
    wrong_order = [u for u in produced if seen_order[u] != expected_order[u]]
    _say(f"Processed {len(outputs):,} events in {elapsed:.1f}s (worker start included)")
    _say("Top users by events (user: counted / produced):")
    for user, n in produced.most_common(8):
        _say(f"  {user}: {final.get(user, 0)} / {n}")
    _say(f"Outputs went to {settings.topic('event-counts')}, by partition: "
         + ", ".join(f"p{p}={n}" for p, n in sorted(per_partition.items())))
    _say(f"Per-user state lives in the RocksDB table 'event-counts' under "
         f"{settings.worker_dir} and its changelog topic "
         f"{settings.app_id}-event-counts-changelog")
    ok = not wrong_counts and not wrong_order
    _say(f"Check: {len(produced) - len(wrong_counts)}/{len(produced)} users counted right, "
         f"{len(produced) - len(wrong_order)}/{len(produced)} in produce order: "
         + ("OK" if ok else "FAILED"))
    return 0 if ok else 1
