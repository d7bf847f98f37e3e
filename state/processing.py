"""How the profile agent applies one record of the profile-inputs topic to one profile.

The rules that make the promises hold:

- **Nothing applied twice.** The profile remembers, per input partition, the offset of the last
  input it applied (`positions`). A redelivered input is not newer and is skipped.
- **Nothing lost.** Everything an input makes (segment changes, activations, merge hand-overs)
  is kept in the profile's `outbox`, in the same record as the state, until the offset that
  made it is committed. When a redelivered input is skipped, the outbox is sent again (the
  ids are deterministic, so consumers drop the copies) and the profile is written again, so a
  changelog left behind the local store catches up.
- **A re-sent event is applied once.** A producer that sends an event again (same `event_id`,
  at another offset: a retry after a timeout) makes a second input. When an event is to be
  applied (at once, or after waiting behind a merge barrier) and the profile applied its id
  within the dedup window (state.profile.seen_before), it changes nothing, makes nothing, and
  is counted in the profile's `duplicates`; its position moves on like any input's. The
  member folds in the visitor's ids at a merge, so the visitor's events re-sent after the
  identify are duplicates there too.
- **Merges before what follows them.** `identify` reaches the member before any later event
  the identity step routes to it and raises a barrier: later inputs of the member wait in
  `buffered` until the visitor's state (`merge_in`) arrives, travelling through the visitor's
  own partition after all of the visitor's earlier events (`merge_out`). Then the state is
  folded in and the waiting inputs are applied in order. That orders the merge with what the
  identify's own partition of the events topic delivers after it (the visitor's key), not with
  events under other keys (the member's own, another device's visitor): those are applied in
  the order they arrive, which may differ from the order they happened in.
- **Crossings counted.** Such an event may land on the other side of a merge than its event
  time puts it; the member counts each one in `merge_crossings` (README: `merge_crossings`
  in /stats/, `cjo_merge_crossings_total`). When a merge's barrier reaches the member, every
  event the member has applied (as far as its `event_ids` reach: CJO_DEDUP_WINDOW, at most
  max_event_ids) whose time is after the identify's crossed it; the barrier records the
  identify's time per events partition (`merge_times`), and an event applied later that came
  through another partition and happened before that time crossed it too. An event of the
  identify's own partition that comes after it was sent after it: in order, never counted.
- **Batch audiences in order.** The sidecar sends `audience` inputs (a SQL segment entered or
  left) into the profile's own partition; they wait behind a merge barrier and are applied in
  order with the events, like events. Each names its run: a run not newer than the last one
  applied for that audience (`positions["audience:<id>"]`) changes nothing.
- **Waits come back in order.** A journey wait is due at a time; the worker's timer sends a
  `wakeup` input to the profile's own partition, so it is applied in order with the profile's
  events. It names the step entry (`seq`) it was set for: a stale or repeated wake-up changes
  nothing (and, like any repeated input, resends the outbox). `waits(profile)` is what the
  due-time index must hold for the profile after each step.
- **Segments follow the clock.** After each judgement the profile keeps when its segments next
  change by time alone (`segments_due`, state.time_changes); that moment is one more wait, a
  wake-up for `@segments`, at which every segment is judged at the due time (the changes'
  cause is `time:<profile>:<due>`) and, when one changed, the journeys move as on a batch
  audience's verdict. A wake-up for another due time is stale and changes nothing.
- **Sending rules.** Deliveries and journeys read the profile's time zone and quiet hours
  (state.activation_rules); the activations an input makes to a destination with a frequency
  cap are decided together once all are made (`journeys`: highest priority first), and the
  profile keeps the send times its caps count (`sends`).
- **Bounded.** `limits` (state.profile.Limits, README "Limits") bounds what a profile holds:
  inputs held behind merge barriers (past `max_buffered_bytes` the barriers are lifted: the
  held inputs and this one are applied now, and each merge is folded in when it arrives, as a
  merge that arrives before its barrier is), the outbox (past `max_outbox_bytes` its oldest
  entries, sent long since, are dropped) and the merge ids remembered. Each is counted in the
  profile's `limited` counters.
"""
from __future__ import annotations

from typing import Protocol

from state.activation_rules import settle
from state.definitions import DefinitionSet
from state.journey_machine import advance
from state.judging import (Output, fire_deliveries, judge_segments, leave_all_segments,
                           set_membership)
from state.profile import (LIMITS, Limits, fold_visitor, new_profile, note_limited,
                           record_event, seen_before)
from state.output_ids import source as output_source
from state.time_changes import SEGMENTS_WAKEUP, next_change

PROFILE_INPUTS = "profile-inputs"
STATS = ("first_seen", "last_seen", "counts", "hourly", "daily", "last_time", "last",
         "aggregates", "request", "segments", "deliveries", "journeys", "sends")


class Wire(Protocol):
    """Encoding, supplied by the topology (the domain stays free of Avro and Kafka). An input
    carries its event decoded (`record["event"]`, a dict): it is decoded once, by the identity
    step."""

    def encode_input(self, record: dict) -> bytes: ...
    def decode_input(self, data: bytes) -> dict: ...
    def encode_profile(self, profile: dict) -> bytes: ...
    def decode_profile(self, data: bytes) -> dict: ...
    def encode_output(self, topic: str, record: dict) -> bytes: ...

    generation: str  # the instance part of output ids (state.output_ids)


def source_of(record: dict) -> str:
    return f"{record['source_partition']}:{record['source_offset']}"


def step(profile: dict | None, record: dict, offset: int, committed: int | None,
         defs: DefinitionSet, wire: Wire, limits: Limits = LIMITS) -> tuple[dict, list[dict]]:
    """Apply `record` (read at `offset` of its profile-inputs partition; `committed` is that
    partition's committed offset) and return the new profile and the records to send, each
    {"topic", "key", "value": bytes}. The profile must be written back in every case."""
    if profile is None:
        profile = new_profile(record["profile_id"])
    if committed is not None:
        profile["outbox"] = [e for e in profile["outbox"] if e["offset"] >= committed]
    if _already_applied(profile, record):
        # Sent again only when this very input is read again (a redelivery after a crash
        # before the commit): what it made may not have reached the broker. The same input at
        # another offset (forwarded twice) or a wake-up for a wait the profile has left makes
        # nothing: what the first one made was flushed before its offset was committed.
        return profile, [r for e in profile["outbox"] if e["offset"] == offset
                         for r in e["records"]]

    sends: list[dict] = []
    kind = record["kind"]
    if kind == "audience":
        profile["positions"][_audience_position(record)] = record["run"]
    elif kind not in ("merge_in", "wakeup"):  # these two are not positions of an input topic
        profile["positions"][str(record["source_partition"])] = record["source_offset"]
    if kind == "wakeup" and record["journey"] == SEGMENTS_WAKEUP:
        _wake_segments(profile, record, offset, defs, wire, sends, limits)
    elif kind == "wakeup":
        _wake(profile, record, offset, defs, wire, sends, limits)
    elif kind == "merge_in":
        _merge_in(profile, record, offset, defs, wire, sends, limits)
    elif kind == "merge_out":
        _merge_out(profile, record, offset, wire, sends, limits)
    elif profile["merged_into"]:
        # Routing sends nothing here after a merge; should a stray input come, it belongs to
        # the member.
        forwarded = {**record, "profile_id": profile["merged_into"]}
        _emit(profile, source_of(record), offset, [Output(PROFILE_INPUTS,
              profile["merged_into"], forwarded)], wire, sends, limits)
    elif kind == "identify" and record["merge_id"] not in profile["merges_done"]:
        _barrier_crossings(profile, record)
        profile["pending_merges"].append(record["merge_id"])
        _hold(profile, record, offset, defs, wire, sends, limits)
    elif profile["pending_merges"]:
        _hold(profile, record, offset, defs, wire, sends, limits)
    else:
        _apply(profile, record, offset, defs, wire, sends, limits)
    return profile, sends


def reapply(profile: dict | None, inputs: list[tuple[dict, int, int | None]],
            defs: DefinitionSet, wire: Wire, limits: Limits = LIMITS) -> dict | None:
    """`profile` (as stored) with `inputs` — (record, offset, committed) as each was first
    stepped — applied again: the state they left, rebuilt, since `step` is deterministic. What
    they made is not returned (it was made the first time). The worker uses it when a step
    fails half-way through a profile it keeps in memory between writes."""
    for record, offset, committed in inputs:
        profile, _ = step(profile, record, offset, committed, defs, wire, limits)
    return profile


def _hold(profile, record, offset, defs, wire, sends, limits) -> None:
    """Keep an input behind the merge barrier; when the held inputs would pass
    `max_buffered_bytes`, lift every barrier instead: the held inputs and this one are applied
    now, in order, and each merge is folded in when its hand-over arrives (like a hand-over
    that comes before its barrier). Nothing waits without bound, and nothing is dropped."""
    data = wire.encode_input(record)
    held = profile["buffered"]
    if sum(map(len, held)) + len(data) <= limits.max_buffered_bytes:
        held.append(data)
        return
    note_limited(profile, "merge_waits", len(profile["pending_merges"]))
    profile["pending_merges"] = []
    waiting, profile["buffered"] = held, []
    for data in waiting:
        _apply(profile, wire.decode_input(data), offset, defs, wire, sends, limits)
    _apply(profile, record, offset, defs, wire, sends, limits)


def _barrier_crossings(profile: dict, record: dict) -> None:
    """A merge's barrier (its identify) reaches the member: the events the member applied
    before it that happened after the identify crossed the merge; and from now on, events
    from other partitions than the identify's that happened before it will (`crosses_merge`)."""
    t = record["event"]["time"]
    profile["merge_crossings"] += sum(1 for at in profile["event_ids"].values() if at > t)
    times = profile["merge_times"]
    partition = str(record["source_partition"])
    if times.get(partition, t) <= t:
        times[partition] = t


def crosses_merge(profile: dict, record: dict) -> bool:
    """Whether an event input, applied now, crosses one of the member's merges out of event
    time order: it came through another partition of the events topic than the merge's
    identify, whose barrier the member has passed, and happened before that identify."""
    t = record["event"]["time"]
    partition = str(record["source_partition"])
    return any(at > t for p, at in profile["merge_times"].items() if p != partition)


def _already_applied(profile: dict, record: dict) -> bool:
    if record["kind"] == "merge_in":
        return record["merge_id"] in profile["merges_done"]
    if record["kind"] == "wakeup" and record["journey"] == SEGMENTS_WAKEUP:
        return profile["segments_due"] != record["due"]
    if record["kind"] == "wakeup":
        state = profile["journeys"].get(record["journey"])
        return not (state and state["status"] == "active" and state["seq"] == record["seq"]
                    and state["due"] is not None)
    if record["kind"] == "audience":
        return profile["positions"].get(_audience_position(record), -1) >= record["run"]
    last = profile["positions"].get(str(record["source_partition"]), -1)
    return last >= record["source_offset"]


def _audience_position(record: dict) -> str:
    return f"audience:{record['audience']}"


def _apply(profile, record, offset, defs, wire, sends, limits) -> None:
    if record["kind"] == "audience":
        _apply_audience(profile, record, offset, defs, wire, sends, limits)
    else:
        _apply_event(profile, record, offset, defs, wire, sends, limits)


def _apply_audience(profile, record, offset, defs, wire, sends, limits) -> None:
    """The sidecar's verdict on a batch audience: membership changes (an output when it does),
    and the profile's journeys move as on an event, which lets a journey use the audience as
    entry criteria. Other segments are judged again on the profile's next event."""
    cause = f"audience:{record['audience']}:{record['run']}:{profile['profile_id']}"
    source = output_source(wire.generation, profile["profile_id"], "audience",
                           record["audience"], record["run"])
    now = record["time"]
    outputs = set_membership(profile, record["audience"], record["member"], now, source, cause)
    outputs += journeys(profile, defs, None, set(profile["segments"]), now, source, cause,
                        enter=True, limits=limits)
    _emit(profile, source, offset, outputs, wire, sends, limits)


def _apply_event(profile, record, offset, defs, wire, sends, limits) -> None:
    event = record["event"]
    if seen_before(profile, event, limits):
        profile["duplicates"] += 1  # a re-send: applied once already (the worker counts it)
        return
    if profile["merge_times"] and crosses_merge(profile, record):
        profile["merge_crossings"] += 1  # the worker counts it
    first = profile["last_seen"] is None
    record_event(profile, event, limits)
    source = output_source(wire.generation, profile["profile_id"], "event", event["event_id"])
    members, outputs = judge_segments(profile, defs, event["time"], source, event["event_id"],
                                      event_name=event["name"], first=first)
    _schedule(profile, defs)
    pending = [] if defs.caps else None
    outputs += fire_deliveries(profile, event, members, defs, source, pending)
    outputs += journeys(profile, defs, event, members, event["time"], source,
                        event["event_id"], limits=limits, pending=pending)
    _emit(profile, source, offset, outputs, wire, sends, limits)


def _wake(profile, record, offset, defs, wire, sends, limits) -> None:
    journey, seq, due = record["journey"], record["seq"], record["due"]
    cause = f"wakeup:{profile['profile_id']}:{journey}:{seq}"  # unique across profiles
    source = output_source(wire.generation, profile["profile_id"], "wakeup", journey, seq)
    outputs = journeys(profile, defs, None, set(profile["segments"]), due, source, cause,
                       wakeup=(journey, seq), limits=limits)
    _emit(profile, source, offset, outputs, wire, sends, limits)


def _wake_segments(profile, record, offset, defs, wire, sends, limits) -> None:
    """Time alone changes a segment now: judge them all at the due time."""
    due = record["due"]
    cause = f"time:{profile['profile_id']}:{due}"  # unique across profiles
    source = output_source(wire.generation, profile["profile_id"], "time", due)
    members, outputs = judge_segments(profile, defs, due, source, cause)
    if outputs:
        outputs += journeys(profile, defs, None, members, due, source, cause, enter=True,
                            limits=limits)
    _schedule(profile, defs)
    _emit(profile, source, offset, outputs, wire, sends, limits)


def _schedule(profile: dict, defs: DefinitionSet) -> None:
    """When the segments just judged next change by time alone (None: never, as things are)."""
    judged = profile["segments_judged_at"]
    profile["segments_due"] = (None if judged is None or profile["merged_into"] else
                               next_change(profile, defs.timed_segments, judged))


def _latest(defs: DefinitionSet) -> dict:
    return defs.latest_journeys


def journeys(profile: dict, defs: DefinitionSet, event: dict | None, members: set, now: int,
             source: str, caused_by: str, *, pending: list | None = None,
             limits: Limits = LIMITS, **how) -> list[Output]:
    """The journeys' moves on one input (state.journey_machine.advance, `how`: wakeup, enter),
    then the caps' decision over every activation of the input to a capped destination, the
    deliveries' already in `pending` included (state.activation_rules.settle)."""
    rules = defs.rules
    if rules.caps and pending is None:
        pending = []
    outputs = advance(profile, defs.journey_versions, defs.latest_journeys, event, members, now,
                      source, caused_by, limits=limits, rules=rules, pending=pending, **how)
    if pending:
        settle(profile, pending, rules.caps)
    return outputs


def waits(profile: dict) -> set[tuple[str, int, int]]:
    """(journey, seq, due) of every wait the profile is in: the due-time index's entries."""
    out = {(jid, s["seq"], s["due"]) for jid, s in profile["journeys"].items()
           if s["status"] == "active" and s["due"] is not None}
    if profile["segments_due"] is not None:
        out.add((SEGMENTS_WAKEUP, 0, profile["segments_due"]))
    return out


def _merge_out(profile, record, offset, wire, sends, limits) -> None:
    """The visitor hands its history to the member and becomes a pointer to it."""
    merge_id = record["merge_id"]
    member = record["member_id"]
    has_history = not profile["merged_into"] and profile["last_seen"] is not None
    state = wire.encode_profile(profile) if has_history else None
    now = profile["last_seen"] or 0
    source = _merge_source(profile, record, wire)
    outputs = leave_all_segments(profile, now, source, merge_id)
    outputs.append(Output(PROFILE_INPUTS, member, {
        "kind": "merge_in", "profile_id": member,
        "source_partition": record["source_partition"],
        "source_offset": record["source_offset"],
        "event": None, "visitor_id": record["visitor_id"], "member_id": member,
        "merge_id": merge_id, "state": state,
    }))
    fresh = new_profile(profile["profile_id"])
    for key in STATS:
        profile[key] = fresh[key]
    profile["limited"] = {}  # the counters went with the state: the member adds them up
    profile["event_ids"] = {}  # so did the ids: the member drops the visitor's re-sends
    profile["merged_into"] = member
    profile["segments_due"] = None  # it is in no segment now, and has no history
    _emit(profile, source, offset, outputs, wire, sends, limits)


def _merge_source(profile: dict, record: dict, wire: Wire) -> str:
    """What the ids of a merge's outputs for this profile start with: the merge's identify
    position names it (state.output_ids)."""
    return output_source(wire.generation, profile["profile_id"], "merge",
                         record["source_partition"], record["source_offset"])


def _merge_in(profile, record, offset, defs, wire, sends, limits) -> None:
    merge_id = record["merge_id"]
    if record["state"] is not None:
        fold_visitor(profile, wire.decode_profile(record["state"]), limits)
    done = profile["merges_done"]
    done.append(merge_id)
    # A merge's duplicate (a redelivered hand-over or barrier) comes within a commit interval;
    # the ids of merges long done need not be kept for ever.
    if len(done) > limits.max_merges_remembered:
        forgotten = len(done) - limits.max_merges_remembered
        del done[:forgotten]
        note_limited(profile, "merges", forgotten)
    if merge_id in profile["pending_merges"]:
        profile["pending_merges"].remove(merge_id)
    outputs = []
    source = _merge_source(profile, record, wire)
    if profile["last_seen"] is not None:
        _, outputs = judge_segments(profile, defs, profile["last_seen"], source, merge_id)
        _schedule(profile, defs)
    _emit(profile, source, offset, outputs, wire, sends, limits)
    if profile["pending_merges"]:
        return
    waiting, profile["buffered"] = profile["buffered"], []
    for data in waiting:
        held = wire.decode_input(data)
        if held["kind"] == "identify" and held["merge_id"] not in profile["merges_done"]:
            # Another merge's barrier: everything after it waits again.
            profile["pending_merges"].append(held["merge_id"])
        if profile["pending_merges"]:
            profile["buffered"].append(data)
        else:
            _apply(profile, held, offset, defs, wire, sends, limits)


def _emit(profile, source, offset, outputs: list[Output], wire, sends, limits) -> None:
    if not outputs:
        return
    records = [{"topic": o.topic, "key": o.key, "value": wire.encode_output(o.topic, o.record)}
               for o in outputs]
    outbox = profile["outbox"]
    outbox.append({"source": source, "offset": offset, "records": records})
    sends.extend(records)
    if len(outbox) > 1:
        # The outbox only matters if the worker dies before the broker has acknowledged the
        # sends of an uncommitted input; the oldest entries were sent longest ago, so past
        # max_outbox_bytes they go first (the newest entry always stays).
        size = sum(map(_entry_bytes, outbox))
        while size > limits.max_outbox_bytes and len(outbox) > 1:
            size -= _entry_bytes(outbox.pop(0))
            note_limited(profile, "outbox")


def _entry_bytes(entry: dict) -> int:
    return len(entry["source"]) + sum(len(r["topic"]) + len(r["key"]) + len(r["value"])
                                      for r in entry["records"])
