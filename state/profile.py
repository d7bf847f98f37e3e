"""A profile's user data and how one event changes it (KARTE's step 2: current data + event →
new data). Plain dicts in the shape of schemas/profile.avsc, so the table stores them as is.

Limits (README "Limits"): what a profile accumulates is bounded. A profile records at most
`max_event_names` distinct event names (besides identify, attribute and __metadata), at most
`max_fields` distinct fields (an event name and field pair, as `last.<event>.<field>`,
`attribute.<field>` and the aggregates read them) and at most `max_text_bytes` of text in its
latest values. What would go past a limit is not recorded, and the profile's `limited`
counters say how much was left out; the event itself is still counted in first/last seen and
judged (segments, deliveries and journeys see `event.*` whole).

Duplicate events: a profile keeps the ids of the events it applied within `dedup_window_ms`
of its latest event time (`event_ids`, at most `max_event_ids`); an event whose id is kept is
a duplicate (`seen_before`): a producer's re-send, applied and judged once only.
"""
from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b

from state.durations import DAY, HOUR

HOURS_KEPT = 7 * 24
DAYS_KEPT = 90
METADATA = "__metadata"
# Names that are always recorded, whatever the name limit: the profile's own attributes, its
# merges and the request metadata must never be crowded out by a producer's stray names.
ALWAYS_RECORDED = frozenset({"identify", "attribute", METADATA})


@dataclass(frozen=True)
class Limits:
    """The per-profile limits (README "Limits"), passed to the domain as a value; the worker
    builds it from the settings (`from_settings`). The defaults keep the largest possible
    profile record under Kafka's default record size limit (Faust's producer sends at most
    1,000,000 bytes per request; the broker takes at most 1,048,588 bytes per record batch):
    the changelog record of a profile, and a visitor's whole profile inside a merge hand-over,
    must always fit, or the worker could not write the profile at all."""

    # Distinct event names recorded per profile, besides ALWAYS_RECORDED. Apps track tens of
    # event kinds (KARTE's view, buy, ...; Amplitude advises a few hundred per project); a
    # profile with more than 100 is a producer putting ids into names. Each name may hold 169
    # hourly and 91 daily buckets (about 2.7 KB), so 100 names cost at most ~280 KB.
    max_event_names: int = 100
    # Distinct fields per profile (event name, field), as CDPs bound user properties
    # (Amplitude 1,000 per project, Mixpanel 2,000 per profile, Braze 250 custom attributes).
    max_fields: int = 1000
    # UTF-8 bytes of the strings kept as latest values (`last`): one event may carry 8 KiB
    # strings, and 1,000 of them would be 8 MB; 64 KiB holds hundreds of URLs or names (a
    # typical profile keeps a few KB).
    max_text_bytes: int = 64 * 1024
    # Journey records (active or left) per profile. A left journey's record is its re-entry
    # history and its funnel rows, so it counts too; a deployment runs tens of journeys.
    max_journeys: int = 50
    # Journey versions whose sparse state a journey record keeps: the running one and the two
    # before it (a profile re-entering an `always` journey across a year of edits would
    # otherwise keep a sparse table per version).
    max_journey_versions: int = 3
    # Bytes of inputs held behind merge barriers (about 200 typical events, far more than
    # a person makes while a merge crosses two partitions); past it the barriers are lifted
    # (processing.py).
    max_buffered_bytes: int = 64 * 1024
    # Bytes of outputs in the outbox of uncommitted inputs (about 300 outputs within one
    # commit interval); past it the oldest are dropped (processing.py).
    max_outbox_bytes: int = 64 * 1024
    # Merge ids remembered (against a redelivered hand-over or barrier, which comes within a
    # commit interval of the merge); older ones are forgotten.
    max_merges_remembered: int = 50
    # An event's time may be at most this long after its record's timestamp (events.py).
    max_clock_skew_ms: int = DAY
    # Duplicate events: an event whose id the profile applied within this much event time
    # before its latest event is dropped. Producers re-send within minutes (a timeout, a
    # retry queue); Amplitude drops a repeated insert_id within 7 days, Segment a messageId
    # within a day or so.
    dedup_window_ms: int = 7 * DAY
    # Event ids a profile keeps for that (26 bytes each in msgpack: a 16-character digest and
    # a time, whatever the id's length, so 1,000 cost about 26 KB): a week of a busy person's
    # events. Past it the ids applied earliest go first, and their re-sends are applied again.
    max_event_ids: int = 1000

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        """The limits a worker's settings (cjo.settings.Settings) configure."""
        return cls(max_event_names=settings.max_event_names_per_profile,
                   max_fields=settings.max_attributes_per_profile,
                   max_text_bytes=settings.max_profile_text_bytes,
                   max_journeys=settings.max_journeys_per_profile,
                   max_clock_skew_ms=round(settings.max_clock_skew * 1000),
                   dedup_window_ms=round(settings.dedup_window * 1000),
                   max_event_ids=settings.max_event_ids_per_profile)


LIMITS = Limits()
# The keys of a profile's `limited` counters (what a limit kept out):
LIMITED = {
    "event_names": "events whose name was not recorded (max_event_names reached)",
    "fields": "values not recorded because the profile had max_fields fields",
    "text": "string values not kept as latest values (max_text_bytes reached)",
    "journeys": "journey entries refused (max_journeys records)",
    "journey_versions": "journey versions whose sparse state was dropped",
    "merge_waits": "merge barriers lifted before their merge (max_buffered_bytes reached)",
    "outbox": "outbox entries dropped before their commit (max_outbox_bytes reached)",
    "merges": "merge ids forgotten (max_merges_remembered reached)",
    "event_ids": "event ids forgotten inside the dedup window (max_event_ids reached)",
}


def note_limited(profile: dict, what: str, n: int = 1) -> None:
    """Count `n` things a limit kept out of the profile (never silently)."""
    if n:
        limited = profile.setdefault("limited", {})
        limited[what] = limited.get(what, 0) + n


def new_profile(profile_id: str) -> dict:
    return {
        "profile_id": profile_id,
        "merged_into": None,
        "first_seen": None,
        "last_seen": None,
        "counts": {},
        "hourly": {},
        "daily": {},
        "last_time": {},
        "last": {},
        "aggregates": {},
        "request": None,
        "segments": [],
        "deliveries": {},
        "positions": {},
        "merges_done": [],
        "pending_merges": [],
        "buffered": [],
        "outbox": [],
        "journeys": {},
        "limited": {},
        "segments_key": None,
        "segments_judged_at": None,
        "segments_due": None,
        "sends": {},
        "event_ids": {},
        "duplicates": 0,
        "merge_times": {},
        "merge_crossings": 0,
    }


def record_event(profile: dict, event: dict, limits: Limits = LIMITS) -> None:
    """Fold one event into the profile's statistics, within the limits."""
    name, t, values = event["name"], event["time"], event["values"]
    before = profile["last_seen"]
    if profile["first_seen"] is None or t < profile["first_seen"]:
        profile["first_seen"] = t
    if before is None or t > before:
        profile["last_seen"] = t
    counts = profile["counts"]
    if name not in counts and not may_add_name(profile, name, limits):
        note_limited(profile, "event_names")
        _prune(profile, before, ())
        return
    counts[name] = counts.get(name, 0) + 1
    now = profile["last_seen"]
    hourly = _bump(profile["hourly"], name, t // HOUR, now // HOUR - HOURS_KEPT)
    daily = _bump(profile["daily"], name, t // DAY, now // DAY - DAYS_KEPT)
    values = _recordable(profile, name, values, limits)
    # Events of one profile normally arrive in time order; a late one must not overwrite the
    # latest values with older ones.
    if t >= profile["last_time"].get(name, t):
        profile["last_time"][name] = t
        _set_latest(profile, name, values, limits)
        if name == METADATA and event["request_id"]:
            profile["request"] = {"id": event["request_id"], "values": dict(event["values"])}
    aggregates = profile["aggregates"]
    for field, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            per_name = aggregates.setdefault(name, {})
            agg = per_name.get(field)
            v = float(value)
            if agg is None:
                per_name[field] = {"sum": v, "min": v, "max": v, "n": 1}
            else:
                agg["sum"] += v
                agg["n"] += 1
                if v < agg["min"]:
                    agg["min"] = v
                if v > agg["max"]:
                    agg["max"] = v
    _prune(profile, before, (name,) if hourly or daily else ())


# ---------------------------------------------------------------- limits


def may_add_name(profile: dict, name: str, limits: Limits) -> bool:
    """Whether a name the profile has not recorded yet may be recorded."""
    if name in ALWAYS_RECORDED:
        return True
    counts = profile["counts"]
    recorded = len(counts) - sum(1 for n in ALWAYS_RECORDED if n in counts)
    return recorded < limits.max_event_names


def field_count(profile: dict) -> int:
    """Distinct (event name, field) pairs the profile records, in `last` or `aggregates`."""
    last = profile["last"]
    n = sum(len(fields) for fields in last.values())
    for name, fields in profile["aggregates"].items():
        kept = last.get(name)
        n += len(fields) if not kept else sum(1 for f in fields if f not in kept)
    return n


def _recordable(profile: dict, name: str, values: dict, limits: Limits) -> dict:
    """`values` without the fields the profile may not add (the field limit). New fields are
    taken in sorted order while there is room, so the choice never depends on map order."""
    if not values:
        return values
    last = profile["last"].get(name) or {}
    agg = profile["aggregates"].get(name) or {}
    new = [f for f in values if f not in last and f not in agg]
    if not new:
        return values
    room = limits.max_fields - field_count(profile)
    if len(new) <= room:
        return values
    refused = set(sorted(new)[max(room, 0):])
    note_limited(profile, "fields", len(refused))
    return {f: v for f, v in values.items() if f not in refused}


def text_bytes(value) -> int:
    """UTF-8 bytes of a string value (0 for anything else)."""
    if value.__class__ is not str:
        return 0
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def profile_text_bytes(profile: dict) -> int:
    return sum(text_bytes(v) for fields in profile["last"].values() for v in fields.values())


def _set_latest(profile: dict, name: str, values: dict, limits: Limits) -> None:
    """last[name].update(values), within the text limit: a string that does not fit is not
    kept, and the field's older value goes too (no condition reads a stale value)."""
    latest = profile["last"].setdefault(name, {})
    growth = 0
    for field, value in values.items():
        if value.__class__ is str or latest.get(field).__class__ is str:
            growth += text_bytes(value) - text_bytes(latest.get(field))
    if growth <= 0:
        latest.update(values)
        return
    total = profile_text_bytes(profile)
    if total + growth <= limits.max_text_bytes:
        latest.update(values)
        return
    for field in sorted(values):
        value, old = values[field], text_bytes(latest.get(field))
        new = text_bytes(value)
        if total - old + new <= limits.max_text_bytes:
            latest[field] = value
            total += new - old
        else:
            latest.pop(field, None)
            total -= old
            note_limited(profile, "text")


# ---------------------------------------------------------------- windows


def _bump(buckets: dict, name: str, index: int, oldest: int) -> bool:
    """Count one event in bucket `index` of `name`; True when the name may now hold a bucket
    older than the horizon `oldest` that pruning has not seen: a new bucket beyond it (a late
    event), or a second bucket next to one that was alone (and so kept, however old)."""
    per_name = buckets.get(name)
    key = str(index)
    if per_name is None:
        buckets[name] = {key: 1}
        return False
    n = per_name.get(key)
    per_name[key] = (n or 0) + 1
    return n is None and (index < oldest or len(per_name) == 2)


def _prune(profile: dict, before: int | None, names) -> None:
    """Drop window buckets older than any window can reach (7 days hourly, 90 daily); a
    window of `within` reads from index (now - within) // size on, so that one stays. A name
    with a single bucket keeps it.

    `before` is the profile's latest event time before this event and `names` the names this
    event may have given an old bucket: every other name was pruned at `before` already, so
    when the horizon moved only the indices it passed need to go (the work is per hour of
    event time, not per event and bucket); None prunes everything."""
    now = profile["last_seen"]
    if now is None:
        return
    for buckets, size, kept in ((profile["hourly"], HOUR, HOURS_KEPT),
                                (profile["daily"], DAY, DAYS_KEPT)):
        oldest = now // size - kept
        passed = 0 if before is None else oldest - (before // size - kept)
        for name, per_name in buckets.items():
            if len(per_name) <= 1:
                continue
            if before is None or name in names or passed > len(per_name):
                for index in [i for i in per_name if int(i) < oldest]:
                    del per_name[index]
            elif passed > 0:
                for index in range(oldest - passed, oldest):
                    per_name.pop(str(index), None)


# ---------------------------------------------------------------- duplicate events


def event_key(event_id: str) -> str:
    """What a profile keeps of an event id: 8 bytes of its BLAKE2b digest in hex (16
    characters, whatever the id's length, up to 256). A new id matches one of the 1,000 a
    profile keeps by chance about once in 10^16 events."""
    return blake2b(event_id.encode(), digest_size=8).hexdigest()


def seen_before(profile: dict, event: dict, limits: Limits = LIMITS) -> bool:
    """True when the profile has applied an event with this event's id, at a time within
    `dedup_window_ms` before its latest event time (`last_seen`): the event is a duplicate and
    is not applied. Otherwise the id is kept, unless the event itself is older than the window
    (nothing would match it), and the ids the window or `max_event_ids` leave out are dropped,
    those applied earliest first (the latter counted in `limited`). Event time, not arrival,
    makes the window: a replay of the same inputs drops the same events."""
    ids = profile["event_ids"]
    key = event_key(event["event_id"])
    latest, t = profile["last_seen"], event["time"]
    known = ids.get(key)
    if latest is None:
        oldest = t - limits.dedup_window_ms
    else:
        oldest = latest - limits.dedup_window_ms
        if known is not None and known >= oldest:
            return True
        if t > latest:
            oldest = t - limits.dedup_window_ms
        elif t < oldest:
            return False
    if known is not None:
        del ids[key]  # a known id from outside the window: kept again, at its new place
    ids[key] = t
    if len(ids) > limits.max_event_ids or ids[next(iter(ids))] < oldest:
        _forget_ids(profile, oldest, limits)
    return False


def _forget_ids(profile: dict, oldest: int, limits: Limits) -> None:
    """Drop the ids applied earliest while they are older than `oldest` or more than
    `max_event_ids` are kept. Ids are kept in the order applied, so a late event's id stays
    behind newer ones until its turn comes (it matches nothing once out of the window)."""
    ids, forgotten = profile["event_ids"], 0
    while ids:
        first = next(iter(ids))
        if ids[first] >= oldest and len(ids) <= limits.max_event_ids:
            break
        forgotten += ids.pop(first) >= oldest
    note_limited(profile, "event_ids", forgotten)


def _fold_event_ids(member: dict, visitor: dict, limits: Limits) -> None:
    """The ids both applied, within the window of the merged profile's latest event time
    (call after `last_seen` widened), by event time; past `max_event_ids` the oldest go
    (counted). A visitor event re-sent after the merge is a duplicate at the member."""
    if not visitor.get("event_ids"):
        return
    both = {**visitor["event_ids"], **member["event_ids"]}
    member["event_ids"] = dict(sorted(both.items(), key=lambda kv: kv[1]))
    latest = member["last_seen"]
    _forget_ids(member, -1 if latest is None else latest - limits.dedup_window_ms, limits)


# ---------------------------------------------------------------- merges


def fold_visitor(member: dict, visitor: dict, limits: Limits = LIMITS) -> None:
    """Merge a visitor's history into the member (identify). Counts and windows add up, first
    and last seen widen, latest values come from whichever side saw that event name last
    (the member on a tie), aggregates combine, delivery counters add up, the send times that
    frequency caps count combine, the event ids kept against duplicates combine, and journeys
    only the visitor was in carry over with their positions (the member keeps its own
    otherwise).
    Within the limits: the visitor's names, fields and journeys that do not fit (taken in
    sorted order) are left out and counted, and the visitor's own counters add up."""
    for key, pick in (("first_seen", min), ("last_seen", max)):
        values = [v for v in (member[key], visitor[key]) if v is not None]
        member[key] = pick(values) if values else None
    for name in sorted(visitor["counts"]):
        n = visitor["counts"][name]
        if name not in member["counts"] and not may_add_name(member, name, limits):
            note_limited(member, "event_names", n)
            continue
        member["counts"][name] = member["counts"].get(name, 0) + n
        for buckets in ("hourly", "daily"):
            if name in visitor[buckets]:
                mine = member[buckets].setdefault(name, {})
                for index, k in visitor[buckets][name].items():
                    mine[index] = mine.get(index, 0) + k
        theirs_last = visitor["last"].get(name, {})
        theirs_agg = visitor["aggregates"].get(name, {})
        fits = _recordable(member, name, {**dict.fromkeys(theirs_agg), **theirs_last}, limits)
        t = visitor["last_time"].get(name)
        mine_t = member["last_time"].get(name)
        if t is not None and (mine_t is None or t > mine_t):
            member["last_time"][name] = t
            member["last"][name] = dict(member["last"].get(name, {}))
            _set_latest(member, name, {f: v for f, v in theirs_last.items() if f in fits},
                        limits)
        fields = {f: agg for f, agg in theirs_agg.items() if f in fits}
        if fields:
            mine = member["aggregates"].setdefault(name, {})
            for field, agg in fields.items():
                if field not in mine:
                    mine[field] = dict(agg)
                else:
                    m = mine[field]
                    m["sum"] += agg["sum"]
                    m["n"] += agg["n"]
                    m["min"] = min(m["min"], agg["min"])
                    m["max"] = max(m["max"], agg["max"])
    if visitor["request"] and not member["request"]:
        member["request"] = visitor["request"]
    for journey in sorted(visitor["journeys"]):
        # The member keeps its own position; journeys only the visitor was in carry over.
        if journey in member["journeys"]:
            continue
        if len(member["journeys"]) >= limits.max_journeys:
            note_limited(member, "journeys")
            continue
        member["journeys"][journey] = visitor["journeys"][journey]
    for delivery, c in visitor["deliveries"].items():
        mine = member["deliveries"].get(delivery)
        if mine is None:
            member["deliveries"][delivery] = dict(c)
        else:
            mine["total"] += c["total"]
            if mine["day"] == c["day"]:
                mine["day_count"] += c["day_count"]
            elif c["day"] > mine["day"]:
                mine["day"], mine["day_count"] = c["day"], c["day_count"]
    for destination, times in (visitor.get("sends") or {}).items():
        # The same person's sends count against the caps together (state.activation_rules
        # trims them to the cap's window at the next decision).
        member["sends"][destination] = sorted([*member["sends"].get(destination, ()), *times])
    _fold_event_ids(member, visitor, limits)
    for what, n in (visitor.get("limited") or {}).items():
        note_limited(member, what, n)
    _prune(member, None, ())
