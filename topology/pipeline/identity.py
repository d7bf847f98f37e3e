"""The identity step: input events (keyed by the producer's id) → profile-inputs (keyed by the
canonical profile id), with visitor → member aliases in a RocksDB table on the visitor's
input partition.

Routing is a function of the input position: an alias applies to the visitor's events from the
identify's offset on, so a redelivered event goes exactly where it went the first time.
"""
from __future__ import annotations

import logging

from schemas.codec import CodecError
from state.events import (IDENTIFY, Rejection, canonical_id, check_event, check_framing,
                          check_size)
from state.profile import Limits
from topology.machinery.faust_fixes import InputOrder, fail_stop
from topology.machinery.sending import Outgoing
from topology.machinery.table_batch import TableBatch

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
    dead = topology.dead_letters
    aliases = topology.table("aliases", "alias")
    alias_codec = wire.alias
    encode_input = wire.encode_input
    max_ahead = Limits.from_settings(topology.settings).max_clock_skew_ms
    max_bytes = topology.settings.max_event_bytes
    event_accepted = topology.metrics.event_accepted
    counters = stats.counters

    # Producers may write events in transactions: one control record after each.
    order = InputOrder(app, markers=1)

    @app.batches.agent(events)
    async def identity(tp, records) -> None:
        await order.check(tp, records)
        outgoing = Outgoing()
        table = TableBatch(aliases, tp.partition, alias_codec)
        for record in records:
            try:
                route(record, table, outgoing)
            except Exception as exc:  # not the event's fault (bad input is dead-lettered)
                fail_stop(record, exc)
        table.commit(outgoing)
        await topology.sender.submit(outgoing)

    def forward(outgoing, kind, profile_id, record, event, **extra) -> None:
        # The event goes decoded: the profile agent does not decode it again.
        routed = {"kind": kind, "profile_id": profile_id,
                  "source_partition": record.partition, "source_offset": record.offset,
                  "event": event, "visitor_id": None, "member_id": None,
                  "merge_id": None, "state": None, **extra}
        outgoing.add("profile-inputs", profile_id.encode(), encode_input(routed))

    def route(record, aliases: TableBatch, outgoing: Outgoing) -> None:
        rejected = check_size(record.value, max_bytes)
        if rejected is None:
            try:
                event = wire.decode_event(record.value)
            except CodecError as exc:
                rejected = check_framing(record.value) or Rejection("undecodable", exc.problem)
            else:
                rejected = check_event(record.key, event, record.timestamp, max_ahead=max_ahead)
        if rejected is not None:
            dead.add(outgoing, record, rejected.code, rejected.reason)
            return
        counters["events_in"] += 1
        event_accepted()
        visitor, offset = event["visitor_id"], record.offset
        if event["name"] == IDENTIFY:
            member = event["user_id"]
            alias = aliases.get(visitor)
            if member_at(alias, offset) == member:
                forward(outgoing, "event", member, record, event)  # identified before: no merge
                return
            entries = list((alias or {}).get("entries", ()))
            if not any(e["since_offset"] == offset for e in entries):
                entries.append({"since_offset": offset, "member": member})
            # Written on every pass, so a replay also re-sends the changelog record.
            aliases.put(visitor, {"entries": entries})
            merge_id = f"{visitor}>{member}@{record.partition}:{offset}"
            # The barrier first, to the member, before any later event routed to it ...
            forward(outgoing, "identify", member, record, event, visitor_id=visitor,
                    merge_id=merge_id)
            # ... and the hand-over through the visitor's partition, behind its events.
            forward(outgoing, "merge_out", visitor, record, None, visitor_id=visitor,
                    member_id=member, merge_id=merge_id)
            counters["identifies"] += 1
            return
        if event["user_id"]:
            forward(outgoing, "event", event["user_id"], record, event)
        else:
            target = member_at(aliases.get(visitor), offset) or canonical_id(event)
            forward(outgoing, "event", target, record, event)
