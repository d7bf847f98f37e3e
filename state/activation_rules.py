"""What the definitions say about sending: the profile's time zone, quiet hours, frequency caps
per destination, and which activation wins a cap's last slot (docs/journeys.md rules 17-20).

    time_zone: {attribute: tz, default: Asia/Tokyo}  # attribute.tz when it names an IANA
                                                     # zone, else the default (UTC if none)
    quiet_hours:                                     # per destination: the default of every
      email: {from: "21:00", to: "08:00", then: hold}  # delivery and step that sends there
    caps:                                            # per profile and destination
      email: {max: 2, per: 1d}
      push: [{max: 1, per: 1h}, {max: 5, per: 7d}]

A delivery or an activation step may give its own `quiet_hours` (or `quiet_hours: false`: none,
whatever its destination's default says) and a `priority` (an integer, 0 by default). Pure: the
caller passes the profile, the time and the activations an input made; `settle` decides which of
them a cap suppresses and records the sends in the profile (`sends`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from state.durations import DAY, format_duration, parse_duration
from state.local_time import (UTC, format_time_of_day, next_reached, parse_time_of_day,
                              second_of_day, zone)

QUIET_THEN = ("hold", "drop")
QUIET_KEYS = ("from", "to", "then")
TIME_ZONE_KEYS = ("attribute", "default")
CAP_KEYS = ("max", "per")
# Bounds of a cap: a profile keeps at most MAX_CAP send times per destination, none older than
# MAX_CAP_WINDOW (the memory a cap costs is bounded by the definitions, README "Limits").
MAX_CAP = 1000
MAX_CAP_WINDOW = 365 * DAY
QUIET_HOURS = "quiet_hours"  # the reason of an activation held or dropped in quiet hours


@dataclass(frozen=True)
class TimeZoneRule:
    """A profile's zone: the latest `attribute.<attribute>` when it names a zone, else
    `default`."""

    attribute: str | None = None
    default: str = "UTC"

    def zone_of(self, profile: dict) -> ZoneInfo:
        if self.attribute is not None:
            value = (profile["last"].get("attribute") or {}).get(self.attribute)
            if value is not None:
                found = zone(value)
                if found is not None:
                    return found
        return zone(self.default)

    def source(self) -> dict:
        out = {"attribute": self.attribute} if self.attribute is not None else {}
        out["default"] = self.default
        return out


@dataclass(frozen=True)
class QuietHours:
    """From `start` to `end` (minutes of the day, local), across midnight when end < start."""

    start: int
    end: int
    then: str  # hold | drop

    def within(self, tz: ZoneInfo, t: int) -> bool:
        second = second_of_day(t, tz)
        start, end = self.start * 60, self.end * 60
        if start < end:
            return start <= second < end
        return second >= start or second < end

    def over(self, tz: ZoneInfo, t: int) -> int:
        """When the quiet hours that hold at `t` are over: the clock next reaches `end`."""
        return next_reached(t, tz, self.end)

    def source(self) -> dict:
        return {"from": format_time_of_day(self.start), "to": format_time_of_day(self.end),
                "then": self.then}


@dataclass(frozen=True)
class Cap:
    max: int  # activations
    per: int  # ms: in any stretch this long

    def source(self) -> dict:
        return {"max": self.max, "per": format_duration(self.per)}


@dataclass(frozen=True)
class Rules:
    """The sending settings of a definition set, as the machine and the deliveries read them."""

    time_zone: TimeZoneRule | None = None
    quiet_hours: dict[str, QuietHours] = field(default_factory=dict)  # per destination
    caps: dict[str, tuple[Cap, ...]] = field(default_factory=dict)  # per destination

    def zone_of(self, profile: dict) -> ZoneInfo:
        return UTC if self.time_zone is None else self.time_zone.zone_of(profile)

    def quiet_for(self, destination: str, own) -> QuietHours | None:
        """The quiet hours of an activation: its own (False: none), else its destination's."""
        if own is None:
            return self.quiet_hours.get(destination)
        return own or None


NO_RULES = Rules()


# ---------------------------------------------------------------- deciding


@dataclass
class Pending:
    """An activation an input made for a capped destination: sent unless `settle` finds the
    cap full when its turn comes (highest priority first, ties by id)."""

    priority: int
    id: str  # the delivery id, or <journey>/<step>
    destination: str
    time: int
    activation: dict  # the activation record, marked when suppressed
    transition: dict | None = None  # a journey step's `activation` transition
    suppressed_id: str | None = None  # that transition's id once it is activation_suppressed
    delivery: str | None = None  # a delivery's id: its limit counters take the send back


def capped_reason(destination: str) -> str:
    return f"capped:{destination}"


def settle(profile: dict, pending: list[Pending], caps: dict[str, tuple[Cap, ...]]) -> None:
    """Decide the activations of one input that compete for capped destinations: in priority
    order (highest first, ties by id, then by the order they were made), each is sent when every
    cap of its destination has room (fewer than `max` sends recorded later than its time minus
    `per`), and its time is recorded; otherwise it is suppressed (`capped:<destination>`) and
    takes nothing. A profile keeps, per capped destination, the send times inside the longest
    window before its latest send (at most the largest `max` of them)."""
    if not pending:
        return
    sends = profile["sends"]
    for destination in [d for d in sends if d not in caps]:
        del sends[destination]  # its cap is gone: a new one counts from when it is applied
    order = sorted(range(len(pending)), key=lambda i: (-pending[i].priority, pending[i].id, i))
    for i in order:
        p = pending[i]
        rules = caps[p.destination]
        times = sends.get(p.destination, [])
        if any(sum(1 for s in times if s > p.time - cap.per) >= cap.max for cap in rules):
            _suppress(profile, p, capped_reason(p.destination))
            continue
        times = sorted([*times, p.time])
        longest = max(cap.per for cap in rules)
        most = max(cap.max for cap in rules)
        sends[p.destination] = [s for s in times if s > times[-1] - longest][-most:]


def _suppress(profile: dict, p: Pending, reason: str) -> None:
    p.activation["suppressed"] = reason
    if p.transition is not None:
        p.transition.update(kind="activation_suppressed", reason=reason,
                            transition_id=p.suppressed_id)
    if p.delivery is not None:  # not shown: the delivery's own limits do not count it
        count = profile["deliveries"][p.delivery]
        count["total"] -= 1
        count["day_count"] -= 1


# ---------------------------------------------------------------- parsing


def parse_quiet_hours(raw, path: str, error, *, may_hold: bool = True):
    """A QuietHours, False for `false` (none), or None after reporting `error(path, problem)`."""
    if raw is False:
        return False
    if not isinstance(raw, dict):
        error(path, f"expected quiet hours {{from: \"21:00\", to: \"08:00\", then: hold|drop}} "
                    f"or false, got {raw!r}"[:160])
        return None
    unknown = [repr(str(k)) for k in raw if k not in QUIET_KEYS]
    if unknown:
        error(path, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                    f"(allowed: {', '.join(QUIET_KEYS)})")
    times = []
    for key in ("from", "to"):
        if key not in raw:
            error(f"{path}.{key}", "missing: quiet hours need from, to and then")
            continue
        try:
            times.append(parse_time_of_day(raw[key]))
        except ValueError as exc:
            error(f"{path}.{key}", str(exc))
    then = raw.get("then")
    if then not in QUIET_THEN:
        error(f"{path}.then", ("missing" if then is None else f"got {then!r}")
              + ": hold (send when the quiet hours are over) or drop")
    elif then == "hold" and not may_hold:
        error(f"{path}.then", "a delivery answers the event that triggered it and cannot be "
                              "held: drop (a journey's activation step can hold)")
        return None
    if len(times) == 2 and times[0] == times[1]:
        error(path, f"from and to are both {raw['from']}: the quiet hours would be empty")
        return None
    if len(times) != 2 or then not in QUIET_THEN or unknown:
        return None
    return QuietHours(times[0], times[1], then)


def quiet_source(value) -> dict | bool:
    return False if value is False else value.source()


def parse_priority(raw, path: str, error) -> int:
    if type(raw) is not int:
        error(path, f"expected an integer (higher wins a cap's last slot), got {raw!r}")
        return 0
    return raw


def parse_time_zone(raw, path: str, error, field_ok) -> TimeZoneRule | None:
    if not isinstance(raw, dict):
        error(path, f"expected {{attribute: <field>, default: <IANA zone>}}, got {raw!r}"[:160])
        return None
    problems = []

    def note(where, problem):
        problems.append(1)
        error(where, problem)

    unknown = [repr(str(k)) for k in raw if k not in TIME_ZONE_KEYS]
    if unknown:
        note(path, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                   f"(allowed: {', '.join(TIME_ZONE_KEYS)})")
    attribute = raw.get("attribute")
    if attribute is not None and not field_ok(attribute):
        note(f"{path}.attribute", f"{attribute!r} is not a field name: the profile's zone is "
                                  "attribute.<field>, 1-64 letters, digits, _ : -")
    default = raw.get("default", "UTC")
    if zone(default) is None:
        note(f"{path}.default", f"unknown time zone {default!r}: an IANA name such as "
                                "Asia/Tokyo, Europe/Berlin or UTC")
    return None if problems else TimeZoneRule(attribute, default)


def parse_caps(raw, path: str, error) -> dict[str, tuple[Cap, ...]] | None:
    """{destination: caps}; destinations are checked against the definitions by the caller."""
    if not isinstance(raw, dict):
        error(path, f"expected a mapping of destinations to caps {{max: 2, per: 1d}}, "
                    f"got {raw!r}"[:160])
        return None
    caps, ok = {}, True
    for destination, rules in raw.items():
        where = f"{path}.{destination}"
        items = rules if isinstance(rules, list) else [rules]
        if not items:
            error(where, "expected a cap {max: 2, per: 1d} or a non-empty list of them")
            ok = False
            continue
        parsed = []
        for i, item in enumerate(items):
            here = f"{where}[{i}]" if isinstance(rules, list) else where
            cap = _cap(item, here, error)
            if cap is None:
                ok = False
            else:
                parsed.append(cap)
        caps[destination] = tuple(parsed)
    return caps if ok else None


def _cap(raw, path: str, error) -> Cap | None:
    if not isinstance(raw, dict):
        error(path, f"expected a cap {{max: 2, per: 1d}}, got {raw!r}"[:160])
        return None
    ok = True
    unknown = [repr(str(k)) for k in raw if k not in CAP_KEYS]
    if unknown:
        error(path, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                    f"(allowed: {', '.join(CAP_KEYS)})")
        ok = False
    most = raw.get("max")
    if type(most) is not int or not 1 <= most <= MAX_CAP:
        error(f"{path}.max", "missing" if most is None else
              f"expected an integer from 1 to {MAX_CAP}, got {most!r}")
        ok = False
    per = None
    if "per" not in raw:
        error(f"{path}.per", "missing: a cap needs a window (per: 1d)")
        ok = False
    else:
        try:
            per = parse_duration(raw["per"])
        except ValueError as exc:
            error(f"{path}.per", str(exc))
            ok = False
        else:
            if not 0 < per <= MAX_CAP_WINDOW:
                error(f"{path}.per", f"expected a window longer than 0 and at most 365d, got "
                                     f"{raw['per']!r}")
                ok = False
    return Cap(most, per) if ok else None


def caps_source(caps: dict[str, tuple[Cap, ...]]) -> dict:
    return {d: rules[0].source() if len(rules) == 1 else [c.source() for c in rules]
            for d, rules in caps.items()}
