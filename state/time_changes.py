"""When a profile's segments change by time alone, with no input.

Judged with no event, a condition's value moves with the clock only through `since.*` (the ms
from a time of the profile to now) and counts `within` a window (as now moves, a bucket enters
the window at its start and leaves it `within` after its end). Each such comparison flips only
at points that can be listed from the profile: `then + d` and `then + d + 1` for each duration
`d` it compares with, and the moments buckets enter or leave. A segment can change only where
one of its comparisons flips (segments it refers to change at their own such points), so the
earliest of those points where the segment's condition, judged then, differs from its current
membership is exactly when the profile's segments next change by time: `next_change`. The
profile agent keeps it as the profile's time-driven wake-up (`segments_due`)."""
from __future__ import annotations

from state.conditions import Comparison, Count, EvalContext, Since
from state.durations import HOUR

SEGMENTS_WAKEUP = "@segments"  # the wake-up's journey field: no journey id has an @


def next_change(profile: dict, timed_segments, now: int) -> int | None:
    """The first moment after `now` at which one of `timed_segments` ((segment, its timed
    comparisons), DefinitionSet.timed_segments) would be judged otherwise than the profile's
    memberships, which were judged at `now`; None if no such moment comes."""
    members = None
    best = None
    # Called after every event: each comparison's flips (a `since.*` or a windowed count, the
    # only timed references: is_timed) are found without a call per level.
    for segment, comparisons in timed_segments:
        points: set | list = ()
        for comparison in comparisons:
            ref = comparison.ref
            found = (_since_flips(comparison, ref, profile, now) if ref.__class__ is Since
                     else _window_flips(comparison, ref, profile, now))
            if found:
                points = found if not points else {*points, *found}
        if not points:
            continue
        if members is None:
            members = frozenset(profile["segments"])
        inside = segment.id in members
        test = segment.condition.test
        for t in (points if len(points) == 1 else sorted(points)):
            if best is not None and t >= best:
                break
            if test(EvalContext(profile=profile, event=None, now=t, segments=members)) != inside:
                best = t
                break
    return best


def is_timed(comparison: Comparison) -> bool:
    ref = comparison.ref
    return isinstance(ref, Since) or (isinstance(ref, Count) and ref.within is not None)


def _since_flips(comparison: Comparison, ref: Since, profile: dict, now: int) -> list[int]:
    if ref.event is None:
        then = profile.get(ref.key)
    else:
        then = profile.get("last_time", {}).get(ref.event)
    if then is None:
        return []
    accepts = comparison.accepts
    current = accepts(now - then)
    out = []
    for offset in comparison.flip_offsets:
        t = then + offset
        if t > now and accepts(offset) != current:
            current = not current
            out.append(t)
    return out


def _window_flips(comparison: Comparison, ref: Count, profile: dict, now: int) -> list[int]:
    """A count within a window, as state.conditions.Count reads it: buckets with index in
    [(t - within) // size, t // size]. Bucket i enters at t = i * size and leaves at
    t = (i + 1) * size + within."""
    accepts = comparison.accepts
    # Every bucket is counted in the profile's all-time `counts` too, so a window's count lies
    # between 0 and that total whatever the time: a one-sided threshold that holds alike at
    # both ends holds alike all the way (most profiles: too few events to ever reach it).
    if comparison.one_sided and accepts(0) == accepts(_all_time(profile, ref)):
        return []
    size, within = ref.bucket_size, ref.within
    table = profile.get("hourly" if size == HOUR else "daily", {})
    names = table.values() if ref.event is None else (table.get(ref.event) or {},)
    lo, hi = (now - within) // size, now // size
    value, ahead, live = 0, False, []
    for buckets in names:
        for index, n in buckets.items():
            i = int(index)
            if i < lo:
                continue  # left the window already
            if i > hi:  # a bucket ahead of now (an event later than the judged time)
                ahead = True
            else:
                value += n
            live.append((i, n))
    if not live:
        return []
    current = accepts(value)
    # With nothing ahead the count only falls, to 0; a one-sided threshold (gte/gt, or lt/lte)
    # that holds alike now and at 0 holds alike all the way down: no flip (the usual case).
    if not ahead and comparison.one_sided and accepts(0) == current:
        return []
    changes: dict[int, int] = {}
    for i, n in live:
        if i > hi:
            changes[i * size] = changes.get(i * size, 0) + n
        leaves = (i + 1) * size + within
        changes[leaves] = changes.get(leaves, 0) - n
    out = []
    for t in sorted(changes):
        value += changes[t]
        if accepts(value) != current:
            current = not current
            out.append(t)
    return out


def _all_time(profile: dict, ref: Count) -> int:
    """The events a count could ever read in a window: all the profile recorded of them."""
    counts = profile.get("counts", {})
    return sum(counts.values()) if ref.event is None else counts.get(ref.event, 0)
