"""KARTE's step 3: judge segments and deliveries on a profile's new data.

Segments are judged in dependency order (a segment may refer to segments before it); a change
of membership is an output. Deliveries fire when the profile is in the target segment AND the
trigger matches the current event, within the delivery's limits.
"""
from __future__ import annotations

from dataclasses import dataclass

from state.activation_rules import QUIET_HOURS, Pending
from state.conditions import EvalContext, evaluate
from state.definitions import DefinitionSet, choose_variant
from state.durations import DAY

SEGMENT_CHANGES = "segment-changes"
ACTIVATIONS = "activations"


@dataclass(frozen=True)
class Output:
    topic: str  # topic name suffix
    key: str  # profile id
    record: dict


def judge_segments(profile: dict, defs: DefinitionSet, now: int, source: str,
                   caused_by: str, event_name: str | None = None,
                   first: bool = False) -> tuple[set, list[Output]]:
    """Judge the profile's segments at `now`. Given `event_name` (the input is an event of
    that name, already recorded), a segment whose condition such an event cannot change (see
    DefinitionSet.segment_inputs) keeps the membership it has, unless a segment it refers to
    changed now: the result is the same as judging all of them, for a fraction of the work.
    `first` says the event is the profile's first: its memberships before it are those of no
    history under these definitions. Every segment is judged when the profile's memberships
    come from other definitions, and when `event_name` is None."""
    before = profile["segments"]
    profile["segments_judged_at"] = now
    if event_name is not None and first:
        members = set(defs.segments_of_no_history)
        members.update(s for s in before if s in defs.audience_ids)
    elif event_name is not None and profile["segments_key"] == defs.segments_key:
        members = set(before)  # later segments are in it too: none refers to them
    else:
        profile["segments_key"] = defs.segments_key
        return _settle(profile, _judge_all(profile, defs, now), now, source, caused_by)
    profile["segments_key"] = defs.segments_key
    ctx = EvalContext(profile=profile, event=None, now=now, segments=members)
    changed: set = set()
    for sid, test, refs, reads in defs.segments_an_event_can_change(event_name):
        if reads or (changed and not changed.isdisjoint(refs)):
            inside = test(ctx)
            if inside != (sid in members):
                changed.add(sid)
                if inside:
                    members.add(sid)
                else:
                    members.discard(sid)
    if not changed and not first:
        return members, []
    return _settle(profile, members, now, source, caused_by)


def _judge_all(profile: dict, defs: DefinitionSet, now: int) -> set:
    members: set = set()  # grows in dependency order: later segments see earlier ones
    ctx = EvalContext(profile=profile, event=None, now=now, segments=members)
    before = profile["segments"]
    for segment in defs.segments:
        condition = segment.condition
        if condition is None:  # a batch audience: the sidecar says who is in it
            if segment.id in before:
                members.add(segment.id)
        elif condition.test(ctx):
            members.add(segment.id)
    return members


def _settle(profile: dict, members: set, now: int, source: str,
            caused_by: str) -> tuple[set, list[Output]]:
    """The profile's memberships become `members`: an output for each change."""
    before = profile["segments"]
    # Sorted by id, so that neither memberships nor outputs depend on definition order.
    now_in = sorted(members)
    if now_in == before:
        return set(members), []
    pid = profile["profile_id"]
    was = set(before)
    outputs = [_change(pid, seg, "entered", now, source, caused_by)
               for seg in now_in if seg not in was]
    outputs += [_change(pid, seg, "left", now, source, caused_by)
                for seg in before if seg not in members]
    profile["segments"] = now_in
    return set(members), outputs


def set_membership(profile: dict, segment: str, member: bool, now: int,
                   source: str, caused_by: str) -> list[Output]:
    """Enter or leave one segment as told (a batch audience); an output when it changes."""
    current = set(profile["segments"])
    if member == (segment in current):
        return []
    profile["segments"] = sorted(current | {segment} if member else current - {segment})
    return [_change(profile["profile_id"], segment, "entered" if member else "left", now,
                    source, caused_by)]


def leave_all_segments(profile: dict, now: int, source: str, caused_by: str) -> list[Output]:
    pid = profile["profile_id"]
    outputs = [_change(pid, s, "left", now, source, caused_by) for s in profile["segments"]]
    profile["segments"] = []
    return outputs


def _change(pid, segment, change, now, source, caused_by) -> Output:
    return Output(SEGMENT_CHANGES, pid, {
        "change_id": f"{source}/segment/{segment}/{change}",
        "profile_id": pid,
        "segment": segment,
        "change": change,
        "time": now,
        "caused_by": caused_by,
    })


def fire_deliveries(profile: dict, event: dict, members: set, defs: DefinitionSet,
                    source: str, pending: list | None = None) -> list[Output]:
    """The activations of the deliveries the event triggers, within their limits. Within its
    quiet hours (in the profile's time zone) a delivery is dropped: an activation record with
    `suppressed` = `quiet_hours`, not counted by its limits. A delivery to a capped destination
    goes into `pending` (when given), for state.activation_rules.settle to decide."""
    outputs = []
    t = event["time"]
    ctx = EvalContext(profile=profile, event=event, now=t, segments=frozenset(members))
    day = t // DAY
    pid = profile["profile_id"]
    quiet_hours = defs.delivery_quiet_hours
    caps = defs.caps if pending is not None else None
    zone = None
    for d in defs.deliveries:
        if d.segment not in members or not evaluate(d.trigger, ctx):
            continue
        count = profile["deliveries"].get(d.id)
        if count is None:
            count = profile["deliveries"][d.id] = {"total": 0, "day": day, "day_count": 0}
        if day > count["day"]:
            count["day"], count["day_count"] = day, 0
        # A late event of an earlier day counts against the latest day's limit: its own
        # day's count is no longer known, and a limit must never be exceeded.
        if d.limits_total is not None and count["total"] >= d.limits_total:
            continue
        if d.limits_per_day is not None and count["day_count"] >= d.limits_per_day:
            continue
        variant = choose_variant(d, pid)
        record = {
            "activation_id": f"{source}/delivery/{d.id}",
            "delivery": d.id,
            "variant": variant.id,
            "profile_id": pid,
            "payload": dict(variant.payload),
            "time": t,
            "caused_by": event["event_id"],
            "destination": d.destination,
            "suppressed": None,
        }
        outputs.append(Output(ACTIVATIONS, pid, record))
        quiet = quiet_hours.get(d.id) if quiet_hours else None
        if quiet is not None:
            if zone is None:
                zone = defs.rules.zone_of(profile)
            if quiet.within(zone, t):
                record["suppressed"] = QUIET_HOURS  # a delivery answers its event: never held
                continue
        count["total"] += 1
        count["day_count"] += 1
        if caps and d.destination in caps:
            pending.append(Pending(d.priority, d.id, d.destination, t, record, delivery=d.id))
    return outputs
