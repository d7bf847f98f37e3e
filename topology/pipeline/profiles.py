"""The profile agent: strictly one input at a time per partition, in offset order, it applies
each record of profile-inputs to the profile's state (RocksDB table), judges segments and
deliveries, and sends what came of it. The rules are in state.processing; this module only
moves bytes.

It is a batch agent (topology.machinery.batches): it gets a partition's fetched records at once and
submits everything the batch made at its end. The inputs this worker wrote itself (the identity
step's, merges' hand-overs) come as soon as the broker has acknowledged them, when nothing else
was written to the partition before them: the same records at the same offsets, in the same
order, without waiting for the next fetch. The profiles it changes stay decoded in a
write-back cache (topology.machinery.table_cache) and are written once per flush (one RocksDB write
batch, one changelog record per profile): before each commit, before a timer reads the table,
or when `MAX_DIRTY` wait. The due-time index is written at the end of each batch. Nothing
else runs during a batch (no await), so the timers see the tables between two batches."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from schemas.codec import CodecError
from state.processing import reapply, step, waits
from state.profile import Limits
from topology.machinery.faust_fixes import InputOrder, committed_offset, fail_stop, stores_settled
from topology.machinery.sending import Outgoing
from topology.machinery.table_batch import TableBatch
from topology.machinery.table_cache import TableCache
from topology.ops.journey_counts import JourneyCounts, positions
from topology.pipeline.snapshots import Snapshotter
from topology.pipeline.wakeups import WakeupTimer, index_key, sync_index

log = logging.getLogger(__name__)
# Changed profiles kept decoded between writes, at most (a decoded profile takes tens of KB).
MAX_DIRTY = 2000
# Seconds a changed profile stays cached before the agent writes it (a visit's events come
# within seconds; the commit interval is longer).
WRITE_AFTER = 0.5
# Seconds between two writes of such profiles by the agent: they go together (one RocksDB
# write batch per partition, one record batch per changelog partition, one acknowledgement to
# note), not one by one. At a moderate flow a batch holds an input or two, and a write after
# every batch wrote each profile alone: at 300 events/s that write was 6.5% of the worker's
# samples holding the GIL (py-spy), 1.5% with this.
WRITE_EVERY = 0.25


def register(topology) -> None:
    app, wire, stats = topology.app, topology.wire, topology.stats
    inputs = topology.topics["profile-inputs"]
    dead = topology.dead_letters
    definitions = topology.definitions
    profiles = topology.table("profiles", "profile")
    index = topology.table("wakeups", "wakeup")
    profile_codec, index_codec = wire.profile, wire.wakeup
    clock = topology.clock
    limits = Limits.from_settings(topology.settings)
    timer = WakeupTimer(topology, index, clock)
    app.timer(timer.interval)(timer.tick)
    snapshots = Snapshotter(topology, profiles)
    app.timer(topology.settings.snapshot_interval)(snapshots.tick)
    journey_counts = topology.journey_counts = JourneyCounts(topology, profiles)
    app.timer(journey_counts.interval)(journey_counts.tick)

    # Profiles changed since the last write, decoded, and per partition the inputs applied to
    # each since then (with the committed offset they were applied at): what `replay` needs.
    cache = topology.profile_cache = TableCache(profiles, profile_codec, MAX_DIRTY)
    applied: dict[int, dict[str, list]] = defaultdict(dict)

    def write_profiles(outgoing: Outgoing | None = None, older_than: float | None = None,
                       partitions=None) -> Outgoing:
        """Write the cached profiles (or those changed first before `older_than`; of
        `partitions` only, if given) to RocksDB; their changelog records go to `outgoing`."""
        outgoing = Outgoing() if outgoing is None else outgoing
        for partition, keys in cache.flush(outgoing, older_than, partitions).items():
            replayable = applied.get(partition, {})
            for key in keys:
                replayable.pop(key, None)
        return outgoing

    async def flush_profiles() -> None:
        # Before a commit every cached profile is written: a partition at a time, with the
        # agents running in between. All at once held the event loop 15 ms (median; up to
        # 110 ms) at every commit at half the worker's rate in bench.pipeline, once every 2.8
        # s: what the p99 of latency sees. What an agent changes meanwhile is written with its
        # partition, or at the next commit.
        for partition in list(cache.partitions):
            await topology.sender.submit(write_profiles(partitions=(partition,)))
            await asyncio.sleep(0)

    topology.write_tables = write_profiles
    app.before_flush.append(flush_profiles)

    async def write_aged() -> None:
        """With no inputs coming, the agent writes nothing: cached profiles would wait for the
        next commit (or for ever, with nothing to commit)."""
        if cache.dirty and stores_settled(app):
            await topology.sender.submit(
                write_profiles(older_than=time.monotonic() - WRITE_AFTER))

    app.timer(WRITE_AFTER)(write_aged)

    @app.on_partitions_revoked.connect
    def forget(sender, revoked, **kwargs) -> None:
        mine = {tp.partition for tp in revoked if tp.topic == inputs.get_topic_name()}
        snapshots.forget(mine)
        journey_counts.forget(mine)
        cache.forget(mine)
        for p in mine:
            applied.pop(p, None)

    metrics = topology.metrics
    latency = metrics.latency.labels("arrival")
    event_latency = metrics.latency.labels("event_time")
    counters = stats.counters

    order = InputOrder(app)  # we write this topic, without transactions: no gaps at all
    aged_written = 0.0  # monotonic time the agent last wrote the profiles changed long ago

    @app.batches.agent(inputs, ready=definitions.ready)
    async def apply_inputs(tp, records) -> None:
        nonlocal aged_written
        await order.check(tp, records)
        partition = tp.partition
        committed = committed_offset(app, tp)
        defs = definitions.current
        table = cache.partition(partition)
        wakeups = TableBatch(index, partition, index_codec)
        outgoing = Outgoing()
        replayable = applied[partition]
        count = 0
        now_ms = clock.now_ms()  # once a batch: the test clock is a file read
        timed = None  # the batch's last event that made records: its latency is observed
        for message in records:
            profile_id = None
            try:
                record = wire.decode_input(message.value)
                profile_id = record["profile_id"]
                current = table.get(profile_id)
                before = waits(current) if current else set()
                was = positions(current)
                dropped = current["duplicates"] if current else 0
                crossed = current["merge_crossings"] if current else 0
                # Outbox entries below the committed offset are durable: step prunes them.
                profile, sends = step(current, record, message.offset, committed, defs, wire,
                                      limits)
            except CodecError as exc:
                dead.add(outgoing, message, "undecodable", exc.problem)
                continue
            except Exception as exc:  # a bug or a bad definition: never ack it silently
                log.exception("profile input %s[%d]@%d failed", message.topic,
                              message.partition, message.offset)
                dead.add(outgoing, message, "processing_error", f"{type(exc).__name__}: {exc}")
                if profile_id in replayable:  # step may have changed it half-way: undo that
                    table.put(profile_id, replay(partition, profile_id,
                                                 replayable[profile_id], defs))
                continue
            try:
                table.put(profile_id, profile)
                replayable.setdefault(profile_id, []).append((record, message.offset,
                                                              committed))
                snapshots.touched(partition, message.offset, profile_id)
                journey_counts.changed(partition, was, positions(profile))
                if profile["duplicates"] != dropped:  # re-sent events (state.processing)
                    counters["duplicate_events"] += profile["duplicates"] - dropped
                if profile["merge_crossings"] != crossed:  # merges crossed (state.processing)
                    counters["merge_crossings"] += profile["merge_crossings"] - crossed
                sync_index(wakeups, before, profile)
                if record["kind"] == "wakeup":
                    wakeups.delete(index_key(profile_id, record["journey"], record["seq"],
                                             record["due"]))
                    delay = now_ms - record["due"]
                    stats.observe_wakeup(delay)
                    metrics.wakeup_delay.observe(max(0, delay) / 1000)
                for out in sends:
                    outgoing.add(out["topic"], out["key"].encode(), out["value"])
            except Exception as exc:  # not the input's fault: never ack it
                fail_stop(message, exc)
            count += 1
            if sends:
                latency.observe(time.time() - message.timestamp / 1000)
                if record["kind"] == "event":
                    timed = record
        if timed is not None:  # one sample a batch
            event_latency.observe(max(0.0, now_ms - timed["event"]["time"]) / 1000)
        try:
            wakeups.commit(outgoing)
            # Profiles changed first a while ago are written as the agent goes, so that a
            # commit has few left to write (a pause for every input in the last interval).
            now = time.monotonic()
            if now - aged_written >= WRITE_EVERY:
                write_profiles(outgoing, older_than=now - WRITE_AFTER)
                aged_written = now
            if cache.dirty > cache.max_dirty:  # memory: written now, not at the commit
                write_profiles(outgoing)
        except Exception as exc:  # the store refused the write: nothing of the batch counts
            fail_stop(records[-1], exc)
        counters["inputs_applied"] += count
        await topology.sender.submit(outgoing)

    def replay(partition: int, profile_id: str, inputs: list, defs) -> dict:
        """The profile as it was before an input failed half-way: its stored state with the
        inputs applied since it was written applied again."""
        stored = TableBatch(profiles, partition, profile_codec).get(profile_id)
        counting, wire.on_output = wire.on_output, None  # its outputs were counted already
        try:
            return reapply(stored, inputs, defs, wire, limits)
        finally:
            wire.on_output = counting
