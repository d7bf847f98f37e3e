"""The profile agent: strictly one input at a time per partition, in offset order, it applies
each record of profile-inputs to the profile's state (RocksDB table), judges segments and
deliveries, and sends what came of it. The rules are in state.processing; this module only
moves bytes.

It is a batch agent (topology.batches): it gets a partition's fetched records at once, keeps
the profiles they touch decoded for the whole batch, and writes each changed profile once at
the end (one RocksDB write batch, one changelog record per profile), then submits everything
the batch made. Between the first input of a batch and that write nothing else runs (no
await), so the timers that read the tables (snapshots, live counts, wake-ups) see the table
between two batches, never in the middle of one."""
from __future__ import annotations

import logging
import time

from schemas.codec import CodecError
from state.processing import step, waits
from state.profile import Limits
from topology.faust_fixes import InputOrder, committed_offset, fail_stop
from topology.journey_counts import JourneyCounts, positions
from topology.sending import Outgoing
from topology.snapshots import Snapshotter
from topology.table_batch import TableBatch
from topology.wakeups import WakeupTimer, index_key, sync_index

log = logging.getLogger(__name__)


def register(topology) -> None:
    app, wire, stats = topology.app, topology.wire, topology.stats
    inputs = topology.topics["profile-inputs"]
    dead = topology.dead_letters
    definitions = topology.definitions
    profiles = topology.table("profiles", "profile")
    index = topology.table("wakeups", "wakeup")
    profile_codec = topology.table_codecs["profiles"]
    index_codec = topology.table_codecs["wakeups"]
    clock = topology.clock
    limits = Limits.from_settings(topology.settings)
    timer = WakeupTimer(topology, index, clock)
    app.timer(timer.interval)(timer.tick)
    snapshots = Snapshotter(topology, profiles)
    app.timer(topology.settings.snapshot_interval)(snapshots.tick)
    journey_counts = topology.journey_counts = JourneyCounts(topology, profiles)
    app.timer(journey_counts.interval)(journey_counts.tick)

    @app.on_partitions_revoked.connect
    def forget(sender, revoked, **kwargs) -> None:
        mine = {tp.partition for tp in revoked if tp.topic == inputs.get_topic_name()}
        snapshots.forget(mine)
        journey_counts.forget(mine)

    metrics = topology.metrics
    latency = metrics.latency.labels("arrival")
    event_latency = metrics.latency.labels("event_time")
    counters = stats.counters

    order = InputOrder(app)  # we write this topic, without transactions: no gaps at all

    @app.batches.agent(inputs)
    async def apply_inputs(tp, records) -> None:
        await definitions.ready.wait()
        await order.check(tp, records)
        partition = tp.partition
        committed = committed_offset(app, tp)
        defs = definitions.current
        table = TableBatch(profiles, partition, profile_codec)
        wakeups = TableBatch(index, partition, index_codec)
        outgoing = Outgoing()
        applied: dict[str, list] = {}  # profile id -> (record, offset) applied in this batch
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
                if profile_id in applied:  # step may have changed it half-way: undo that
                    table.put(profile_id, replay(partition, profile_id, applied[profile_id],
                                                 committed, defs))
                continue
            try:
                table.put(profile_id, profile)
                applied.setdefault(profile_id, []).append((record, message.offset))
                snapshots.touched(partition, message.offset, profile_id)
                journey_counts.changed(partition, was, positions(profile))
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
        if timed is not None:  # one sample a batch: the event's second decode is not free
            event_time = wire.decode_event(timed["event"])["time"]
            event_latency.observe(max(0.0, now_ms - event_time) / 1000)
        try:
            table.commit(outgoing)
            wakeups.commit(outgoing)
        except Exception as exc:  # the store refused the write: nothing of the batch counts
            fail_stop(records[-1], exc)
        counters["inputs_applied"] += count
        await topology.sender.submit(outgoing)

    def replay(partition: int, profile_id: str, inputs: list, committed, defs) -> dict:
        """The profile as it was after the inputs this batch applied to it before one failed:
        its stored state with them applied again (step is deterministic). Their records were
        made already: they are neither counted nor sent again."""
        profile = TableBatch(profiles, partition, profile_codec).get(profile_id)
        counting, wire.on_output = wire.on_output, None
        try:
            for record, offset in inputs:
                profile, _ = step(profile, record, offset, committed, defs, wire, limits)
        finally:
            wire.on_output = counting
        return profile
