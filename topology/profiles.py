"""The profile agent: strictly one input at a time per partition, it applies each record of
profile-inputs to the profile's state (RocksDB table), judges segments and deliveries, and
sends what came of it. The rules are in state.processing; this module only moves bytes."""
from __future__ import annotations

import logging
import time

from schemas.codec import CodecError
from state.processing import step, waits
from state.profile import Limits
from topology.journey_counts import JourneyCounts, positions
from topology.snapshots import Snapshotter
from topology.wakeups import WakeupTimer, index_key, sync_index
from topology.faust_fixes import InputOrder, committed_offset, fail_stop

log = logging.getLogger(__name__)


def register(topology) -> None:
    app, wire, stats = topology.app, topology.wire, topology.stats
    inputs = topology.topics["profile-inputs"]
    send = topology.sender.send
    dead = topology.dead_letters
    definitions = topology.definitions
    profiles = topology.table("profiles", "profile")
    index = topology.table("wakeups", "wakeup")
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

    order = InputOrder(app)  # we write this topic, without transactions: no gaps at all

    @app.agent(inputs, name="profiles")
    async def apply_inputs(stream):
        await definitions.ready.wait()
        async for event in stream.events():
            message = event.message
            if not order.follows(message):
                await order.hole(message)
            try:
                record = wire.decode_input(message.value)
                profile_id = record["profile_id"]
                current = profiles.get(profile_id)
                before = waits(current) if current else set()
                was = positions(current)
                # Outbox entries below the committed offset are durable: step prunes them.
                profile, sends = step(current, record, message.offset,
                                      committed_offset(app, message.tp), definitions.current,
                                      wire, limits)
            except CodecError as exc:
                await dead.send(message, "undecodable", exc.problem)
                continue
            except Exception as exc:  # a bug or a bad definition: never ack it silently
                log.exception("profile input %s[%d]@%d failed", message.topic,
                              message.partition, message.offset)
                await dead.send(message, "processing_error", f"{type(exc).__name__}: {exc}")
                continue
            try:
                profiles[profile_id] = profile
                snapshots.touched(message.partition, message.offset, profile_id)
                journey_counts.changed(message.partition, was, profile)
                sync_index(index, before, profile)
                if record["kind"] == "wakeup":
                    index.pop(index_key(profile_id, record["journey"], record["seq"],
                                        record["due"]), None)
                    delay = clock.now_ms() - record["due"]
                    stats.observe_wakeup(delay)
                    metrics.wakeup_delay.observe(max(0, delay) / 1000)
                for out in sends:
                    await send(out["topic"], out["key"].encode(), out["value"])
            except Exception as exc:  # not the input's fault: never ack it
                fail_stop(message, exc)
            stats.counters["inputs_applied"] += 1
            if sends:
                metrics.latency.labels("arrival").observe(time.time() - message.timestamp)
                if record["kind"] == "event":
                    event_time = wire.decode_event(record["event"])["time"]
                    metrics.latency.labels("event_time").observe(
                        max(0.0, clock.now_ms() - event_time) / 1000)
