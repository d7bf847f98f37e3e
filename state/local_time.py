"""Wall-clock time in a profile's time zone: the zones, and when a time of day is reached.

Zones are IANA names (`Asia/Tokyo`, `America/New_York`, links such as `Japan` included), read
from the `tzdata` package that the project depends on, never from the operating system's
database: every worker, the reference model and a replay of the same inputs then use the same
rules, whatever the machine has installed (the system's database may be older or newer, and
`localtime` there is the machine's own zone). `Factory` is not a zone a profile can have.

The rule for times of day that daylight saving time makes odd (docs/journeys.md rule 8): a time
of day is *reached* at an instant at which the zone's clock reads it, or jumps past it.
- A time that does not exist on a day (the clocks spring forward: 02:30 in Europe/Berlin on
  2026-03-29) is reached when the clock jumps past it: 03:00 CEST, 01:00 UTC.
- A time that exists twice on a day (the clocks fall back: 01:30 in America/New_York on
  2026-11-01) is reached twice, at 01:30 EDT and at 01:30 EST; "the next 01:30" after 01:40
  EDT is 01:30 EST.
Every instant here is milliseconds since 1970 (UTC), as event times are.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS = dt.timedelta(milliseconds=1)
_DAY = dt.timedelta(days=1)
# Not a zone a profile lives in ("Local time zone must be set").
_NOT_PLACES = frozenset({"Factory"})


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """Every IANA zone name the tzdata package holds (canonical names and links)."""
    text = resources.files("tzdata").joinpath("zones").read_text()
    return frozenset(text.split()) - _NOT_PLACES


_ZONES: dict[str, ZoneInfo] = {}  # at most len(zone_names()) entries


def zone(name) -> ZoneInfo | None:
    """The zone named `name`, or None when it is not an IANA zone name (any other value)."""
    found = _ZONES.get(name) if name.__class__ is str else None
    if found is None:
        if name.__class__ is not str or name not in zone_names():
            return None
        with resources.files("tzdata").joinpath("zoneinfo", *name.split("/")).open("rb") as f:
            found = _ZONES[name] = ZoneInfo.from_file(f, key=name)
    return found


UTC = zone("UTC")


def local(t: int, tz: ZoneInfo) -> dt.datetime:
    """The zone's wall-clock time at instant `t` (ms)."""
    return (_EPOCH + t * _MS).astimezone(tz)


def _ms(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _MS


def second_of_day(t: int, tz: ZoneInfo) -> int:
    """Seconds since the local midnight that the zone's clock shows at `t`."""
    wall = local(t, tz)
    return wall.hour * 3600 + wall.minute * 60 + wall.second


def weekday(t: int, tz: ZoneInfo) -> int:
    """The local weekday at `t` (0 = Monday)."""
    return local(t, tz).weekday()


def reached(day: dt.date, minute: int, tz: ZoneInfo) -> tuple[int, ...]:
    """The instants (in order) at which the zone's clock reaches `minute` (of the day) on the
    local date `day`: one, two when the clocks fall back over it, or, when it does not exist
    that day, the instant the clock jumps past it."""
    naive = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    first = _ms(naive.replace(tzinfo=tz, fold=0))
    second = _ms(naive.replace(tzinfo=tz, fold=1))
    if first == second:
        return (first,)
    if first < second:  # fold=0 is the earlier offset's reading: the time happens twice
        return (first, second)
    # In a gap fold=0 reads it with the offset before the jump (a later instant), fold=1 with
    # the offset after it: the jump itself lies between the two.
    return (_jump(tz, second, first),)


def _jump(tz: ZoneInfo, low: int, high: int) -> int:
    """The first instant in (low, high] with another UTC offset than `low` (there is one)."""
    before = local(low, tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if local(middle, tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def next_reached(t: int, tz: ZoneInfo, minute: int, days: tuple[int, ...] = (),
                 after: bool = False) -> int:
    """The first instant at or after `t` (strictly after, with `after`) at which the zone's
    clock reaches `minute` on a local date whose weekday is in `days` (any day when empty)."""
    day = local(t, tz).date() - _DAY  # a clock set back over midnight reaches yesterday again
    for _ in range(10):  # an allowed weekday comes within 8 dates of yesterday
        if not days or day.weekday() in days:
            for instant in reached(day, minute, tz):
                if instant > t or (instant == t and not after):
                    return instant
        day += _DAY
    raise AssertionError("unreachable: every date reaches every time of day")


def next_day_start(t: int, tz: ZoneInfo, days: tuple[int, ...]) -> int:
    """The first instant of the next local date after `t`'s whose weekday is in `days`."""
    day = local(t, tz).date() + _DAY
    for _ in range(7):
        if day.weekday() in days:
            return reached(day, 0, tz)[0]
        day += _DAY
    raise AssertionError("unreachable: days is not empty")


def parse_time_of_day(raw) -> int:
    """Minutes since midnight of "HH:MM" (00:00 to 23:59); ValueError says what is wrong."""
    if type(raw) is int:
        # YAML 1.1 (PyYAML) reads an unquoted 21:00 as the base-60 number 1260.
        raise ValueError(f"{raw!r} is a number: write a time of day in quotes, as \"21:00\" "
                         "(YAML reads an unquoted 21:00 as the number 1260)")
    if not isinstance(raw, str) or len(raw) != 5 or raw[2] != ":" \
            or not (raw[:2] + raw[3:]).isdigit() or not raw.isascii():
        raise ValueError(f"expected a time of day as HH:MM (00:00 to 23:59), got {raw!r}")
    hours, minutes = int(raw[:2]), int(raw[3:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"{raw!r} is not a time of day (00:00 to 23:59)")
    return hours * 60 + minutes


def format_time_of_day(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
