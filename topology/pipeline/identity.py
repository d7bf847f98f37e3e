"""The identity step: input events (keyed by the producer's id) → profile-inputs (keyed by the
canonical profile id), with visitor → member aliases in a RocksDB table on the visitor's
input partition.

Routing is a function of the input position: an alias applies to the visitor's events from the
identify's offset on, so a redelivered event goes exactly where it went the first time.

Each identify that records a new alias also makes an `<app>.identity-merges` record (keyed by
the member), in the batch's records with the profile inputs it makes: it is sent before the
input's offset is committed, and a replay of the identify makes it again with the same id.

An input record whose key is not on the partition Kafka's default partitioner picks (murmur2)
is counted (`wrong_partition` in /stats/, `cjo_wrong_partition_events_total`) and logged once
per key, and processed as any other: see `WrongPartitions`.
"""
from __future__ import annotations

import logging

from schemas.codec import CodecError
from state.events import (IDENTIFY, Rejection, canonical_id, check_event, check_framing,
                          check_size)
from state.output_ids import merge_id as output_merge_id
from state.profile import Limits
from topology.machinery.faust_fixes import InputOrder, fail_stop
from topology.machinery.sending import Outgoing, key_hash
from topology.machinery.table_batch import TableBatch

log = logging.getLogger(__name__)

# Keys on a wrong partition logged one line each, at most; further keys are only counted.
MAX_LOGGED_KEYS = 1000


def member_at(alias: dict | None, offset: int) -> str | None:
    """The member a visitor was identified as at this input offset, if any."""
    member = None
    for entry in (alias or {}).get("entries", ()):
        if entry["since_offset"] < offset:
            member = entry["member"]
    return member


def merge_record(event: dict, previous: str | None, merge_id: str, partition: int,
                 offset: int) -> dict:
    """The `cjo.IdentityMerge` record of an identify (at `partition`:`offset` of the events
    topic) that makes the visitor an alias of the member."""
    return {"merge_id": merge_id, "visitor_id": event["visitor_id"],
            "member_id": event["user_id"], "previous_member_id": previous,
            "time": event["time"], "caused_by": event["event_id"],
            "source_partition": partition, "source_offset": offset}


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's, aiokafka's, librdkafka's
    `murmur2_random`) puts a key on: murmur2 of its bytes, made positive, modulo the count."""
    return key_hash(key) % partitions


class WrongPartitions:
    """Input records whose key is not on the partition murmur2 picks for it.

    A counted warning, not a dead letter: such a record is processed like any other. Routing
    and order hold per input partition (the alias table is kept per input partition): as long
    as every producer of a key puts it on one partition (one partitioner for all, even
    librdkafka's default CRC-32), the key's events keep their order and a visitor's alias is
    on the partition its later events come through, so the results are right. What breaks is
    a key split over two partitions (two partitioners for one key, or partitions added to the
    topic): its two streams are ordered by arrival only, and a visitor's events on the other
    partition than its identify's do not see the alias; they go to the visitor's profile,
    which folds them into the member with its history or, after the merge, forwards them to
    the member, so nothing is lost, but they may be applied out of order with the merge. A
    dead letter would instead drop every event of such a producer (about 7 keys in 8 on 8
    partitions), and the reason codes are the domain's input rules (state/events.py).

    Memory is bounded: the first `max_logged` keys get one log line each; later keys are
    counted only (one line says so)."""

    def __init__(self, counters, max_logged: int = MAX_LOGGED_KEYS) -> None:
        self.counters = counters
        self.max_logged = max_logged
        self.logged: set[bytes] = set()
        self.full = False

    def check(self, record, partitions: int | None) -> bool:
        """True (and counted) if `record` (an accepted input, so keyed) is on another partition
        than murmur2 of its key among `partitions` (None: the count is not known yet)."""
        if not partitions:
            return False
        expected = murmur2_partition(record.key, partitions)
        if expected == record.partition:
            return False
        self.counters["wrong_partition"] += 1
        key = record.key
        if key in self.logged or self.full:
            return True
        if len(self.logged) >= self.max_logged:
            self.full = True
            log.warning("more than %d keys on wrong partitions: further ones are counted "
                        "(wrong_partition in /stats/), not logged", self.max_logged)
            return True
        self.logged.add(key)
        log.warning("key %r is on %s[%d] (offset %d), but Kafka's default partitioner "
                    "(murmur2) puts it on partition %d of %d: processed as usual, but if the "
                    "key also comes through partition %d, the order between the two and a "
                    "visitor's merge are not kept (a producer with another partitioner? "
                    "librdkafka clients: partitioner=murmur2_random); further records of "
                    "this key are counted, not logged", key, record.topic, record.partition,
                    record.offset, expected, partitions, expected)
        return True


def register(topology) -> None:
    app, wire, stats = topology.app, topology.wire, topology.stats
    events = topology.topics["events"]
    dead = topology.dead_letters
    aliases = topology.table("aliases", "alias")
    alias_codec = wire.alias
    encode_input = wire.encode_input
    encode_merge = wire.codecs["identity-merges"].encode
    generation = wire.generation
    max_ahead = Limits.from_settings(topology.settings).max_clock_skew_ms
    max_bytes = topology.settings.max_event_bytes
    event_accepted = topology.metrics.event_accepted
    counters = stats.counters
    outputs = stats.outputs
    wrong_partitions = WrongPartitions(counters)

    def partition_count(topic: str) -> int | None:
        """The topic's partition count as the consumer's metadata has it (kept up to date by
        the consumer for its subscription, so partitions added later count)."""
        try:
            return app.consumer.topic_partitions(topic)
        except Exception:  # no consumer or metadata yet: the check waits for the next batch
            return None

    # Producers may write events in transactions: one control record after each.
    order = InputOrder(app, markers=1)

    @app.batches.agent(events)
    async def identity(tp, records) -> None:
        await order.check(tp, records)
        outgoing = Outgoing()
        table = TableBatch(aliases, tp.partition, alias_codec)
        partitions = partition_count(tp.topic)
        for record in records:
            try:
                route(record, table, outgoing, partitions)
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

    def route(record, aliases: TableBatch, outgoing: Outgoing, partitions: int | None) -> None:
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
        wrong_partitions.check(record, partitions)
        visitor, offset = event["visitor_id"], record.offset
        if event["name"] == IDENTIFY:
            member = event["user_id"]
            alias = aliases.get(visitor)
            previous = member_at(alias, offset)
            if previous == member:
                forward(outgoing, "event", member, record, event)  # identified before: no merge
                return
            entries = list((alias or {}).get("entries", ()))
            replayed = any(e["since_offset"] == offset for e in entries)
            if not replayed:
                entries.append({"since_offset": offset, "member": member})
            # Written on every pass, so a replay also re-sends the changelog record.
            aliases.put(visitor, {"entries": entries})
            merge_id = output_merge_id(generation, visitor, member, record.partition, offset)
            # The merge for consumers, made again (same id and content) by a replay: it goes
            # out with the profile inputs, before the identify's offset is committed.
            outgoing.add("identity-merges", member.encode(), encode_merge(
                merge_record(event, previous, merge_id, record.partition, offset)))
            if not replayed:
                outputs[("identity-merges", "merge")] += 1
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
