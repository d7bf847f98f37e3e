"""A profile's user data and how one event changes it (KARTE's step 2: current data + event →
new data). Plain dicts in the shape of schemas/profile.avsc, so the table stores them as is.
"""
from __future__ import annotations

from state.durations import DAY, HOUR

HOURS_KEPT = 7 * 24
DAYS_KEPT = 90
METADATA = "__metadata"


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
    }


def record_event(profile: dict, event: dict) -> None:
    """Fold one event into the profile's statistics."""
    name, t, values = event["name"], event["time"], event["values"]
    if profile["first_seen"] is None or t < profile["first_seen"]:
        profile["first_seen"] = t
    if profile["last_seen"] is None or t > profile["last_seen"]:
        profile["last_seen"] = t
    counts = profile["counts"]
    counts[name] = counts.get(name, 0) + 1
    _bump(profile["hourly"], name, str(t // HOUR))
    _bump(profile["daily"], name, str(t // DAY))
    # Events of one profile normally arrive in time order; a late one must not overwrite the
    # latest values with older ones.
    if t >= profile["last_time"].get(name, t):
        profile["last_time"][name] = t
        last = profile["last"].setdefault(name, {})
        last.update(values)
        if name == METADATA and event["request_id"]:
            profile["request"] = {"id": event["request_id"], "values": dict(values)}
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
    _prune(profile)


def _bump(buckets: dict, name: str, index: str) -> None:
    per_name = buckets.get(name)
    if per_name is None:
        buckets[name] = {index: 1}
    else:
        per_name[index] = per_name.get(index, 0) + 1


def _prune(profile: dict) -> None:
    """Drop window buckets older than any window can reach (7 days hourly, 90 daily); a
    window of `within` reads from index (now - within) // size on, so that one stays."""
    now = profile["last_seen"]
    if now is None:
        return
    for buckets, size, kept in ((profile["hourly"], HOUR, HOURS_KEPT),
                                (profile["daily"], DAY, DAYS_KEPT)):
        oldest = now // size - kept
        for name, per_name in buckets.items():
            if len(per_name) > 1:
                for index in [i for i in per_name if int(i) < oldest]:
                    del per_name[index]


def fold_visitor(member: dict, visitor: dict) -> None:
    """Merge a visitor's history into the member (identify). Counts and windows add up, first
    and last seen widen, latest values come from whichever side saw that event name last
    (the member on a tie), aggregates combine, delivery counters add up, and journeys only the
    visitor was in carry over with their positions (the member keeps its own otherwise)."""
    for key, pick in (("first_seen", min), ("last_seen", max)):
        values = [v for v in (member[key], visitor[key]) if v is not None]
        member[key] = pick(values) if values else None
    for name, n in visitor["counts"].items():
        member["counts"][name] = member["counts"].get(name, 0) + n
    for buckets in ("hourly", "daily"):
        for name, per_name in visitor[buckets].items():
            mine = member[buckets].setdefault(name, {})
            for index, n in per_name.items():
                mine[index] = mine.get(index, 0) + n
    for name, t in visitor["last_time"].items():
        mine = member["last_time"].get(name)
        if mine is None or t > mine:
            member["last_time"][name] = t
            latest = dict(member["last"].get(name, {}))
            latest.update(visitor["last"].get(name, {}))
            member["last"][name] = latest
    if visitor["request"] and not member["request"]:
        member["request"] = visitor["request"]
    for name, fields in visitor["aggregates"].items():
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
    for journey, state in visitor["journeys"].items():
        # The member keeps its own position; journeys only the visitor was in carry over.
        member["journeys"].setdefault(journey, state)
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
    _prune(member)
