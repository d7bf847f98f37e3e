"""The worker's Prometheus metrics (`GET /metrics`), with the standard client library. Histograms
are observed where things happen; counts (kept in `WorkerStats`, also shown by `/stats/`) and
the worker's state (lag, pending wake-ups, snapshot age, recovery) are read at scrape time by a
collector."""
from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4"  # Prometheus's text format (UTF-8, aiohttp's default)
# Seconds: from a few ms (the stream at rest) to minutes (a backlog, or late events).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    def __init__(self, topology) -> None:
        self.topology = topology
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram("cjo_processing_latency_seconds",
                                 "From the input's arrival (Kafka timestamp of the profile "
                                 "input), or from the event's own time (one event sampled "
                                 "per batch of inputs), to its outputs made.",
                                 ["since"], buckets=LATENCY_BUCKETS, registry=r)
        self.wakeup_delay = Histogram("cjo_wakeup_delay_seconds",
                                      "From a journey wait's due time to its wake-up applied.",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.recent = deque(maxlen=4096)  # (monotonic time, events) for the per-second rate
        r.register(_StateCollector(topology, self))

    def event_accepted(self) -> None:
        self.recent.append(time.monotonic())

    def events_per_second(self, window: float = 10.0) -> float:
        now = time.monotonic()
        return sum(1 for t in self.recent if now - t <= window) / window

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, topology, metrics: Metrics) -> None:
        self.topology = topology
        self.metrics = metrics

    def describe(self):
        return []  # values exist only at scrape time

    def collect(self):
        topology = self.topology
        app, stats = topology.app, topology.stats
        counters = stats.counters
        for name, key, text in (
                ("cjo_events", "events_in", "Input events accepted by the identity step."),
                ("cjo_profile_inputs", "inputs_applied", "Profile inputs applied."),
                ("cjo_wakeups_applied", "wakeups_applied", "Journey wake-ups applied."),
                ("cjo_duplicate_events", "duplicate_events",
                 "Events not applied because their profile had applied their event_id within "
                 "the dedup window (a producer's re-send)."),
                ("cjo_merge_crossings", "merge_crossings",
                 "Events applied to a member on the other side of a merge than their event "
                 "time puts them (events under another key than the identify's, which are "
                 "ordered with the merge by arrival only)."),
                ("cjo_snapshots", "snapshots", "Snapshots published by this worker."),
                ("cjo_wrong_partition_events", "wrong_partition",
                 "Input events on another partition than Kafka's default partitioner "
                 "(murmur2 of the key) picks: processed, but a key on two partitions loses "
                 "its order (a producer with another partitioner).")):
            family = CounterMetricFamily(name, text)
            family.add_metric([], counters.get(key, 0))
            yield family
        dead = CounterMetricFamily("cjo_dead_letters", "Records sent to the dead letters.",
                                   labels=["reason"])
        for reason, n in sorted(stats.dead_letters.items()):
            dead.add_metric([reason], n)
        yield dead
        outputs = CounterMetricFamily("cjo_outputs", "New records on the output topics, by "
                                      "topic and kind (transition kind, segment change, "
                                      "activation, merge); resent copies not counted.",
                                      labels=["topic", "kind"])
        for (topic, kind), n in sorted(stats.outputs.items()):
            outputs.add_metric([topic, kind], n)
        yield outputs
        rate = GaugeMetricFamily("cjo_events_per_second",
                                 "Input events accepted per second, over the last 10 s.")
        rate.add_metric([], self.metrics.events_per_second())
        yield rate
        lag = GaugeMetricFamily("cjo_consumer_lag",
                                "Records not yet read, per input partition this worker owns.",
                                labels=["topic", "partition"])
        consumer = getattr(app, "_consumer", None)
        if consumer is not None:
            for tp in sorted(app.assignor.assigned_actives()):
                try:
                    end = consumer.highwater(tp)
                except Exception:  # not fetched yet
                    continue
                read = consumer._read_offset.get(tp)  # Faust keeps it; no public accessor
                done = read + 1 if read is not None else consumer._committed_offset.get(tp) or 0
                if end is not None:
                    lag.add_metric([tp.topic, str(tp.partition)], max(0, end - done))
        yield lag
        pending = GaugeMetricFamily("cjo_wakeups_pending_due",
                                    "Journey waits due and not yet applied.")
        pending.add_metric([], counters.get("wakeups_pending_due", 0))
        yield pending
        age = GaugeMetricFamily("cjo_snapshot_age_seconds",
                                "Seconds since this worker's last snapshot (none yet: absent).")
        last = counters.get("snapshot_last_at")
        if last:
            age.add_metric([], time.time() - last)
        yield age
        pause = GaugeMetricFamily("cjo_snapshot_max_pause_seconds",
                                  "The longest stretch a snapshot held up the profile agent.")
        pause.add_metric([], counters.get("snapshot_max_pause_ms", 0) / 1000)
        yield pause
        recovery = app.tables.recovery
        recovering = GaugeMetricFamily("cjo_recovery_in_progress",
                                       "1 while table changelogs are being restored.")
        recovering.add_metric([], 0 if recovery.completed.is_set() else 1)
        yield recovering
        remaining = GaugeMetricFamily("cjo_recovery_remaining_records",
                                      "Changelog records left to restore, active and standby.",
                                      labels=["replica"])
        remaining.add_metric(["active"], recovery.active_remaining_total())
        remaining.add_metric(["standby"], recovery.standby_remaining_total())
        yield remaining
        rocksdb = GaugeMetricFamily("cjo_rocksdb_memory_bytes",
                                    "Memory of the worker's RocksDB databases, all together: "
                                    "the budget, the shared cache (blocks, index and filter "
                                    "blocks, memtables), the memtables alone.",
                                    labels=["part"])
        for part, n in topology.rocksdb_memory.usage().items():
            rocksdb.add_metric([part.removesuffix("_bytes")], n)
        yield rocksdb
