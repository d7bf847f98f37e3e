"""The identity step: input events (keyed by the producer's id) → profile-inputs (keyed by the
canonical profile id), with visitor → member aliases in a RocksDB table on the visitor's
input partition.

Routing is a function of the input position: an alias applies to the visitor's events from the
identify's offset on, so a redelivered event goes exactly where it went the first time.
"""
from __future__ import annotations

import logging

from schemas.codec import CodecError
from state.events import IDENTIFY, canonical_id, check_event, check_size
from state.profile import Limits
from topology.faust_fixes import InputOrder, fail_stop

log = logging.getLogger(__name__)


def member_at(alias: dict | None, offset: int) -> str | None:
    """The member a visitor was identified as at this input offset, if any."""
    member = None
    for entry in (alias or {}).get("entries", ()):
        if entry["since_offset"] < offset:
            member = entry["member"]
    return member


def register(topology) -> None:
    app, wire, stats = topology.app, topology.wire, topology.stats
    events = topology.topics["events"]
    send = topology.sender.send
    dead = topology.dead_letters
    aliases = topology.table("aliases", "alias")
    encode_input = wire.encode_input
    max_ahead = Limits.from_settings(topology.settings).max_clock_skew_ms

    async def forward(kind, profile_id, message, **extra):
        record = {"kind": kind, "profile_id": profile_id,
                  "source_partition": message.partition, "source_offset": message.offset,
                  "event": message.value, "visitor_id": None, "member_id": None,
                  "merge_id": None, "state": None, **extra}
        await send("profile-inputs", profile_id.encode(), encode_input(record))

    # Producers may write events in transactions: one control record after each.
    order = InputOrder(app, markers=1)

    @app.agent(events, name="identity")
    async def identity(stream):
        async for event in stream.events():
            if not order.follows(event.message):
                await order.hole(event.message)
            try:
                await route(event.message)
            except Exception as exc:  # not the event's fault (bad input is dead-lettered)
                fail_stop(event.message, exc)

    async def route(message) -> None:
        rejected = check_size(message.value, topology.settings.max_event_bytes)
        if rejected is None:
            try:
                record = wire.decode_event(message.value)
            except CodecError as exc:
                await dead.send(message, "undecodable", exc.problem)
                return
            rejected = check_event(message.key, record, int(message.timestamp * 1000),
                                   max_ahead=max_ahead)
        if rejected is not None:
            await dead.send(message, rejected.code, rejected.reason)
            return
        stats.counters["events_in"] += 1
        topology.metrics.event_accepted()
        visitor, offset = record["visitor_id"], message.offset
        if record["name"] == IDENTIFY:
            member = record["user_id"]
            alias = aliases.get(visitor)
            if member_at(alias, offset) == member:
                await forward("event", member, message)  # identified before: no merge
                return
            entries = list((alias or {}).get("entries", ()))
            if not any(e["since_offset"] == offset for e in entries):
                entries.append({"since_offset": offset, "member": member})
            # Written on every pass, so a replay also re-sends the changelog record.
            aliases[visitor] = {"entries": entries}
            merge_id = f"{visitor}>{member}@{message.partition}:{offset}"
            # The barrier first, to the member, before any later event routed to it ...
            await forward("identify", member, message, visitor_id=visitor,
                          merge_id=merge_id)
            # ... and the hand-over through the visitor's partition, behind its events.
            await forward("merge_out", visitor, message, event=None, visitor_id=visitor,
                          member_id=member, merge_id=merge_id)
            stats.counters["identifies"] += 1
            return
        if record["user_id"]:
            await forward("event", record["user_id"], message)
        else:
            target = member_at(aliases.get(visitor), offset) or canonical_id(record)
            await forward("event", target, message)
