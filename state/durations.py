"""Durations in definitions ("45s", "7d", "2w") as integer milliseconds.

Event times are milliseconds since the epoch, so every duration becomes milliseconds
once, when a definition is parsed, and never again on the hot path.
"""
from __future__ import annotations

import re

SECOND = 1_000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
WEEK = 7 * DAY

_UNITS = {"w": WEEK, "d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND, "ms": 1}
# Largest first, without weeks: "14d" reads more naturally than "2w" in a window.
_FORMAT_UNITS = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND, "ms": 1}
# One integer and one unit, nothing else: "1h30m" or "1.5h" are refused rather than guessed.
_PATTERN = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")
_EXPECTED = "expected a number and one of ms, s, m, h, d, w"


def parse_duration(text: str | int) -> int:
    """Milliseconds of "500ms", "45s", "30m", "12h", "7d", "2w", or a plain int (already ms)."""
    # bool is an int in Python, but `true` in a YAML file is a mistake, not one millisecond.
    if type(text) is int:
        if text < 0:
            raise ValueError(f"{text!r} is not a duration: it is negative")
        return text
    if isinstance(text, str):
        match = _PATTERN.fullmatch(text)
        if match:
            return int(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"{text!r} is not a duration: {_EXPECTED}")


def format_duration(ms: int) -> str:
    """Exact text for `ms` in its largest whole unit ("7d" for 604800000), for reading back."""
    if type(ms) is not int or ms < 0:
        raise ValueError(f"{ms!r} is not a duration in milliseconds")
    if ms == 0:
        return "0ms"
    for unit, size in _FORMAT_UNITS.items():
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise AssertionError("unreachable: 1 ms divides every integer")
