"""One condition language for segments, delivery triggers and journeys.

A condition is parsed once into a small tree of frozen dataclasses, then evaluated here in
Python for every event and, later, compiled to SQL by the sidecar. The tree is therefore
declarative (references and operators, no callables), and parsing does all the work that
can be done once: splitting reference paths, parsing durations, checking value types.
For evaluation each node builds, once and on first use, its `test`: a closure over its
children's tests and its operator, so that an event does not walk the tree again.

Syntax (YAML or JSON):

    {all: [c, ...]}   {any: [c, ...]}   {not: c}   {segment: <segment id>}
    {<reference>: {<operator>: value, ...}}     several operators all have to hold
    {count.<event>: {within: 7d, gte: 2}}        `within` only on count references

References:

    event.name  event.time  event.id  event.<field>      the current event
    request.<field>        metadata (`__metadata` values) of the current event's request
    attribute.<field>      latest value of <field> in `attribute` events
    last.<event>.<field>   latest value of <field> in <event> events
    count.<event>  count.*           number of events (never missing: 0 when none)
    sum|min|max|avg.<event>.<field>  over the numeric values of <field>
    first_seen  last_seen            event time (ms) of the first / latest event
    since.first_seen  since.last_seen  since.<event>   ms from that time to now

`event.name`, `event.time` and `event.id` name the event itself, so a value field called
`name`, `time` or `id` cannot be referenced. `since.first_seen` and `since.last_seen` always
mean the profile's times, not events of that name.

Operators: eq ne lt lte gt gte in contains exists.

The missing-value rule: a value that is absent or None is *missing*. On a missing value
every operator is false, `ne` included (missing is not comparable to anything), except
`exists: false`, which is true.

The type rule: values compare only within their family: numbers (int and float: 13 == 13.0),
strings, booleans. Across families every operator is false, `ne` included, and nothing
raises: "13" is neither equal nor unequal to 13, and true is not a number for `lt`/`gt`.
Strings order lexicographically (as SQL does).

Count windows: `within: D` (at most 90 days) counts the events in (now - D, now] from the
profile's buckets: hourly buckets when D <= 7 days, daily ones beyond. A bucket counts when
its index lies in [(now - D) // size, now // size], i.e. when its hour (day) overlaps the
window, so the oldest bucket may add events up to one hour (day) older than the window.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Union

from state.durations import DAY, HOUR, format_duration, parse_duration

# Event names and field names; `__metadata` is allowed since `_` is.
NAME = re.compile(r"[A-Za-z0-9_:-]+")
# Ids of segments, deliveries and journeys.
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "exists")
MAX_WITHIN = 90 * DAY
# Windows up to a week use hourly buckets (precise to the hour); longer ones use daily buckets.
HOURLY_UP_TO = 7 * DAY

_REFERENCE_KINDS = (
    "event.<field>, request.<field>, attribute.<field>, last.<event>.<field>, "
    "count.<event>, count.*, sum.<event>.<field>, min.<event>.<field>, max.<event>.<field>, "
    "avg.<event>.<field>, first_seen, last_seen, since.first_seen, since.last_seen, since.<event>"
)

# What a reference's comparison values must be; checked at parse time.
NUMBER, DURATION, STRING, ANY = "number", "duration", "string", "any"


class ConditionError(ValueError):
    """A bad condition: `path` says where (e.g. "segments[2].condition.all[1]")."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class EvalContext:
    profile: dict
    event: dict | None  # None when nothing is happening to the profile (e.g. a merge)
    now: int  # ms; the current event's time, never the wall clock (replays must agree)
    segments: frozenset[str]


# ---------------------------------------------------------------- references
# Each reference reads one value from the context. `text` is the reference as written.


@dataclass(frozen=True)
class EventAttr:
    """event.name, event.time, event.id: a top-level key of the current event."""

    text: str
    key: str  # "name", "time" or "event_id"

    @property
    def value_kind(self) -> str:
        return NUMBER if self.key == "time" else STRING

    def read(self, ctx: EvalContext):
        event = ctx.event
        return None if event is None else event.get(self.key)


@dataclass(frozen=True)
class EventValue:
    """event.<field>: a value of the current event."""

    text: str
    field: str
    value_kind = ANY

    def read(self, ctx: EvalContext):
        event = ctx.event
        if event is None:
            return None
        values = event.get("values")
        return values.get(self.field) if values else None


@dataclass(frozen=True)
class RequestValue:
    """request.<field>: metadata of the current event's request, never of an older request."""

    text: str
    field: str
    value_kind = ANY

    def read(self, ctx: EvalContext):
        event = ctx.event
        if event is None:
            return None
        if event.get("name") == "__metadata":  # the metadata event is the request itself
            values = event.get("values")
        else:
            request_id = event.get("request_id")
            request = ctx.profile.get("request")
            # A None request id matches nothing: without it the request is unknown.
            if request_id is None or not request or request.get("id") != request_id:
                return None
            values = request.get("values")
        return values.get(self.field) if values else None


@dataclass(frozen=True)
class LastValue:
    """attribute.<field> (event "attribute") and last.<event>.<field>."""

    text: str
    event: str
    field: str
    value_kind = ANY

    def read(self, ctx: EvalContext):
        fields = ctx.profile.get("last", {}).get(self.event)
        return fields.get(self.field) if fields else None


@dataclass(frozen=True)
class Count:
    """count.<event> / count.* (event None), optionally within a window of `within` ms."""

    text: str
    event: str | None
    within: int | None = None
    value_kind = NUMBER

    @property
    def bucket_size(self) -> int | None:
        """HOUR or DAY: the profile buckets a windowed count reads (None without a window)."""
        if self.within is None:
            return None
        return HOUR if self.within <= HOURLY_UP_TO else DAY

    def read(self, ctx: EvalContext) -> int:
        profile = ctx.profile
        if self.within is None:
            counts = profile.get("counts", {})
            if self.event is None:
                return sum(counts.values())
            return counts.get(self.event, 0)
        size = self.bucket_size
        lo, hi = (ctx.now - self.within) // size, ctx.now // size
        table = profile.get("hourly" if size == HOUR else "daily", {})
        names = table.values() if self.event is None else (table.get(self.event) or {},)
        total = 0
        for buckets in names:
            for index, n in buckets.items():
                if lo <= int(index) <= hi:
                    total += n
        return total


@dataclass(frozen=True)
class Aggregate:
    """sum|min|max|avg.<event>.<field> over the numeric values of a field."""

    text: str
    func: str
    event: str
    field: str
    value_kind = NUMBER

    def read(self, ctx: EvalContext):
        stats = ctx.profile.get("aggregates", {}).get(self.event)
        stats = stats.get(self.field) if stats else None
        if not stats:
            return None
        if self.func == "avg":
            total, n = stats.get("sum"), stats.get("n")
            return total / n if n and total is not None else None
        return stats.get(self.func)


@dataclass(frozen=True)
class Seen:
    """first_seen / last_seen: event time (ms) of the profile's first / latest event."""

    text: str
    key: str
    value_kind = NUMBER

    def read(self, ctx: EvalContext):
        return ctx.profile.get(self.key)


@dataclass(frozen=True)
class Since:
    """since.first_seen, since.last_seen (key) or since.<event> (event): ms until now."""

    text: str
    key: str | None = None
    event: str | None = None
    value_kind = DURATION

    def read(self, ctx: EvalContext):
        profile = ctx.profile
        if self.event is None:
            then = profile.get(self.key)
        else:
            then = profile.get("last_time", {}).get(self.event)
        return None if then is None else ctx.now - then


Reference = Union[EventAttr, EventValue, RequestValue, LastValue, Count, Aggregate, Seen, Since]
# References that read the current event rather than the profile.
EVENT_REFERENCES = (EventAttr, EventValue, RequestValue)

# ---------------------------------------------------------------- condition nodes


@dataclass(frozen=True)
class Check:
    """One operator and its (already checked and converted) value; `in` holds a tuple."""

    op: str
    value: object


Test = Callable[[EvalContext], bool]


@dataclass(frozen=True)
class Comparison:
    ref: Reference
    checks: tuple[Check, ...]

    def holds(self, ctx: EvalContext) -> bool:
        return self.test(ctx)

    @cached_property
    def one_sided(self) -> bool:
        """Only lower bounds (gte, gt) or only upper bounds (lt, lte): as the value moves one
        way, the comparison flips at most once."""
        ops = {check.op for check in self.checks}
        return ops <= {"gte", "gt"} or ops <= {"lt", "lte"}

    @cached_property
    def flip_offsets(self) -> tuple[int, ...]:
        """For a duration (`since.*`): the values at which the comparison can change, in
        order. A duration d an operator compares with is passed at d (where eq, lt and gte
        change) or at d + 1 (eq, lte, gt); state.time_changes adds them to a time."""
        offsets = set()
        for check in self.checks:
            for d in (check.value if check.op == "in" else (check.value,)):
                if type(d) in (int, float):
                    offsets.update((int(d), int(d) + 1))
        return tuple(sorted(offsets))

    @cached_property
    def accepts(self) -> Callable[[object], bool]:
        """Whether a value the reference reads passes every operator (state.time_changes
        asks this of values the reference will read later)."""
        checks = tuple(_predicate(check.op, check.value) for check in self.checks)
        if len(checks) == 1:
            return checks[0]

        def accepts(value) -> bool:
            for check in checks:
                if not check(value):
                    return False
            return True
        return accepts

    @cached_property
    def test(self) -> Test:
        read = self.ref.read  # read once, however many operators
        checks = tuple(_predicate(check.op, check.value) for check in self.checks)
        if len(checks) == 1:
            (check,) = checks
            return lambda ctx: check(read(ctx))

        def holds(ctx: EvalContext) -> bool:
            actual = read(ctx)
            for check in checks:
                if not check(actual):
                    return False
            return True
        return holds


@dataclass(frozen=True)
class AllOf:
    items: tuple["Condition", ...]

    def holds(self, ctx: EvalContext) -> bool:
        return self.test(ctx)

    @cached_property
    def test(self) -> Test:
        return _joined(tuple(item.test for item in self.items), decisive=False)


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Condition", ...]

    def holds(self, ctx: EvalContext) -> bool:
        return self.test(ctx)

    @cached_property
    def test(self) -> Test:
        return _joined(tuple(item.test for item in self.items), decisive=True)


@dataclass(frozen=True)
class Not:
    item: "Condition"

    def holds(self, ctx: EvalContext) -> bool:
        return self.test(ctx)

    @cached_property
    def test(self) -> Test:
        test = self.item.test
        return lambda ctx: not test(ctx)


@dataclass(frozen=True)
class InSegment:
    segment: str

    def holds(self, ctx: EvalContext) -> bool:
        return self.segment in ctx.segments

    @cached_property
    def test(self) -> Test:
        segment = self.segment
        return lambda ctx: segment in ctx.segments


Condition = Union[AllOf, AnyOf, Not, InSegment, Comparison]


def _joined(tests: tuple[Test, ...], decisive: bool) -> Test:
    """All of `tests` (`decisive` False: the first False decides) or any of them (True: the
    first True decides), stopping at the first that decides."""
    if len(tests) == 2:
        first, second = tests
        if decisive:
            return lambda ctx: first(ctx) or second(ctx)
        return lambda ctx: first(ctx) and second(ctx)

    def holds(ctx: EvalContext) -> bool:
        for test in tests:
            if bool(test(ctx)) is decisive:
                return decisive
        return not decisive
    return holds

# ---------------------------------------------------------------- operators
# Each takes the actual value (None when missing) and the parsed value.

_NUMBERS = (int, float)  # exact types: bool is not a number here


def _comparable(a, b) -> bool:
    ta, tb = type(a), type(b)
    return ta is tb or (ta in _NUMBERS and tb in _NUMBERS)


def _eq(a, b) -> bool:
    return a is not None and _comparable(a, b) and a == b


def _ne(a, b) -> bool:
    return a is not None and _comparable(a, b) and a != b


def _ordered(a, b) -> bool:
    return a is not None and type(a) is not bool and _comparable(a, b)


def _lt(a, b) -> bool:
    return _ordered(a, b) and a < b


def _lte(a, b) -> bool:
    return _ordered(a, b) and a <= b


def _gt(a, b) -> bool:
    return _ordered(a, b) and a > b


def _gte(a, b) -> bool:
    return _ordered(a, b) and a >= b


def _in(a, values) -> bool:
    for v in values:
        if _eq(a, v):
            return True
    return False


def _contains(a, v) -> bool:
    ta = type(a)
    if ta is str:
        return type(v) is str and v in a
    if ta is list or ta is tuple:
        return _in(v, a)
    return False


def _exists(a, expected) -> bool:
    return (a is not None) is expected


_OPS = {"eq": _eq, "ne": _ne, "lt": _lt, "lte": _lte, "gt": _gt, "gte": _gte,
        "in": _in, "contains": _contains, "exists": _exists}
_ORDERINGS = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
              "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b}


def _predicate(op: str, value) -> Callable[[object], bool]:
    """The check `op value` as a test of the actual value: the operator above, or, for the
    common cases, the same rule with the value's type family decided once (a value of
    another family, or missing, is never equal nor ordered)."""
    family = _family(value)
    if op == "eq" and family is not None:
        return lambda a: type(a) in family and a == value
    if op in _ORDERINGS and family is not None and type(value) is not bool:
        order = _ORDERINGS[op]
        return lambda a: type(a) in family and order(a, value)
    if op == "in":
        families = {_family(v) for v in value}
        if len(families) == 1 and None not in families:
            (family,) = families
            members = frozenset(value)
            return lambda a: type(a) in family and a in members
    if op == "exists":
        return lambda a: (a is not None) is value
    check = _OPS[op]
    return lambda a: check(a, value)


def _family(value) -> tuple[type, ...] | None:
    """The types a value compares with (see _comparable); None for other values."""
    if type(value) in _NUMBERS:
        return _NUMBERS
    if type(value) is str:
        return (str,)
    if type(value) is bool:
        return (bool,)
    return None

# ---------------------------------------------------------------- public API


def evaluate(cond: Condition, ctx: EvalContext) -> bool:
    return cond.test(ctx)


def resolve(ref: Reference, ctx: EvalContext):
    """The value a reference reads in this context (None when missing)."""
    return ref.read(ctx)


def walk(cond: Condition, path: str = "condition") -> Iterator[tuple[str, Condition]]:
    """Every node with its path, in the same notation as ConditionError paths."""
    yield path, cond
    if isinstance(cond, (AllOf, AnyOf)):
        key = "all" if isinstance(cond, AllOf) else "any"
        for i, item in enumerate(cond.items):
            yield from walk(item, f"{path}.{key}[{i}]")
    elif isinstance(cond, Not):
        yield from walk(cond.item, f"{path}.not")


def referenced_segments(cond: Condition) -> set[str]:
    return {node.segment for _, node in walk(cond) if isinstance(node, InSegment)}


def events_read(cond: Condition) -> frozenset[str] | None:
    """The event names whose recording can change the condition's value, segment references
    aside (the judge follows those itself); None when any input can: the condition reads the
    clock (`since.*`, counts `within` a window), the current event or its request, `count.*`,
    `first_seen` or `last_seen`. A condition that reads only `count.<event>`, `sum|min|max|avg`
    of an event's field and latest values (`last.*`, `attribute.*`) keeps its value until an
    event of one of those names comes."""
    names: set[str] = set()
    for _, node in walk(cond):
        if not isinstance(node, Comparison):
            continue
        ref = node.ref
        if isinstance(ref, Count) and ref.event is not None and ref.within is None:
            names.add(ref.event)
        elif isinstance(ref, (Aggregate, LastValue)):
            names.add(ref.event)
        else:
            return None
    return frozenset(names)


def uses_current_event(cond: Condition) -> bool:
    """True when the condition reads the current event or its request (event.*, request.*)."""
    return any(isinstance(node, Comparison) and isinstance(node.ref, EVENT_REFERENCES)
               for _, node in walk(cond))


def to_source(cond: Condition) -> dict:
    """The plain-JSON form of a condition; parse_condition(to_source(c)) == c."""
    if isinstance(cond, AllOf):
        return {"all": [to_source(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"any": [to_source(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": to_source(cond.item)}
    if isinstance(cond, InSegment):
        return {"segment": cond.segment}
    ops: dict = {}
    if isinstance(cond.ref, Count) and cond.ref.within is not None:
        ops["within"] = format_duration(cond.ref.within)
    for check in cond.checks:
        value = check.value
        if cond.ref.value_kind == DURATION and check.op != "exists":
            value = [format_duration(v) for v in value] if check.op == "in" else \
                format_duration(value)
        elif check.op == "in":
            value = list(value)
        ops[check.op] = value
    return {cond.ref.text: ops}


# ---------------------------------------------------------------- parsing


def _unicode_problem(obj, path: str) -> None:
    """Text that is not valid Unicode (a lone surrogate from JSON) cannot reach an event or a
    SQL engine: refuse it here."""
    stack = [(obj, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeError:
                raise ConditionError(where, "text that is not valid Unicode") from None
        elif isinstance(node, dict):
            stack += [(k, where) for k in node] + [(v, f"{where}.{k}") for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, f"{where}[{i}]") for i, v in enumerate(node)]


def parse_condition(obj, path: str = "condition") -> Condition:
    try:
        _unicode_problem(obj, path)
        return _parse(obj, path)
    except RecursionError:  # thousands of levels, or a YAML alias that contains itself
        raise ConditionError(path, "nested too deeply") from None


def _parse(obj, path: str) -> Condition:
    if not isinstance(obj, dict):
        raise ConditionError(path, f"expected a mapping, got {_describe(obj)}")
    if not obj:
        raise ConditionError(path, "empty condition: expected all, any, not, segment "
                                   "or a reference such as attribute.<field>")
    if len(obj) > 1:
        keys = ", ".join(repr(str(k)) for k in obj)
        raise ConditionError(path, f"a condition has exactly one key, got {len(obj)}: {keys} "
                                   "(combine several with all: [...])")
    (key, body), = obj.items()
    if key in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise ConditionError(path, f"{key} needs a non-empty list of conditions, "
                                       f"got {_describe(body)}")
        items = tuple(_parse(c, f"{path}.{key}[{i}]") for i, c in enumerate(body))
        return AllOf(items) if key == "all" else AnyOf(items)
    if key == "not":
        return Not(_parse(body, f"{path}.not"))
    if key == "segment":
        if not isinstance(body, str) or not ID.fullmatch(body):
            raise ConditionError(path, f"segment needs a segment id ([A-Za-z0-9_-], 1 to 64 "
                                       f"characters), got {body!r}")
        return InSegment(body)
    if not isinstance(key, str):
        raise ConditionError(path, f"a reference is text, got {key!r}")
    return _parse_comparison(key, body, path)


def _parse_comparison(text: str, body, path: str) -> Comparison:
    ref = _parse_reference(text, path)
    if not isinstance(body, dict):
        raise ConditionError(path, f"{text!r} needs operators such as {{eq: value}}, "
                                   f"got {_describe(body)}")
    body = dict(body)
    if "within" in body:
        raw = body.pop("within")
        if not isinstance(ref, Count):
            raise ConditionError(path, f"'within' is only allowed on count.* references, "
                                       f"not on {text!r}")
        ref = Count(ref.text, ref.event, _parse_within(raw, path))
    if not body:
        raise ConditionError(path, f"{text!r} has no operator (valid: {', '.join(OPERATORS)})")
    checks = []
    for op, raw in body.items():
        if op not in _OPS:
            raise ConditionError(path, f"{text!r}: unknown operator {op!r} "
                                       f"(valid: {', '.join(OPERATORS)})")
        checks.append(Check(op, _parse_value(ref, op, raw, path)))
    return Comparison(ref, tuple(checks))


def _parse_within(raw, path: str) -> int:
    try:
        within = parse_duration(raw)
    except ValueError as exc:
        raise ConditionError(path, f"within: {exc}") from None
    if within == 0:
        raise ConditionError(path, "within must be longer than 0")
    if within > MAX_WITHIN:
        raise ConditionError(path, f"within is at most 90d, got {raw!r}")
    return within


def _parse_reference(text: str, path: str) -> Reference:
    if text in ("first_seen", "last_seen"):
        return Seen(text, text)
    kind, _, rest = text.partition(".")
    parts = rest.split(".") if rest else []

    def shape(expected: str, n: int) -> list[str]:
        if len(parts) != n:
            raise ConditionError(path, f"{text!r} does not have the form {expected}")
        for part in parts:
            if not NAME.fullmatch(part):
                raise ConditionError(path, f"{text!r}: {part!r} is not a valid name "
                                           "(letters, digits, _, : and -)")
        return parts

    if kind == "event":
        (field,) = shape("event.<field>", 1)
        key = {"name": "name", "time": "time", "id": "event_id"}.get(field)
        return EventAttr(text, key) if key else EventValue(text, field)
    if kind == "request":
        return RequestValue(text, *shape("request.<field>", 1))
    if kind == "attribute":
        return LastValue(text, "attribute", *shape("attribute.<field>", 1))
    if kind == "last":
        return LastValue(text, *shape("last.<event>.<field>", 2))
    if kind == "count":
        if rest == "*":
            return Count(text, None)
        return Count(text, *shape("count.<event> or count.*", 1))
    if kind in ("sum", "min", "max", "avg"):
        return Aggregate(text, kind, *shape(f"{kind}.<event>.<field>", 2))
    if kind == "since":
        if rest in ("first_seen", "last_seen"):
            return Since(text, key=rest)
        (event,) = shape("since.<event>, since.first_seen or since.last_seen", 1)
        return Since(text, event=event)
    raise ConditionError(path, f"unknown reference {text!r}: expected all, any, not, segment "
                               f"or one of {_REFERENCE_KINDS}")


def _parse_value(ref: Reference, op: str, raw, path: str):
    kind = ref.value_kind
    where = f"{ref.text!r} {op}"
    if op == "exists":
        if type(raw) is not bool:
            raise ConditionError(path, f"{where} needs true or false, got {raw!r}")
        return raw
    if op == "in":
        if not isinstance(raw, list) or not raw:
            raise ConditionError(path, f"{where} needs a non-empty list, got {_describe(raw)}")
        return tuple(_scalar(kind, op, v, where, path) for v in raw)
    if op == "contains" and kind in (NUMBER, DURATION):
        raise ConditionError(path, f"{where}: contains needs text or a list, and "
                                   f"{ref.text!r} is a number")
    return _scalar(kind, op, raw, where, path)


def _scalar(kind: str, op: str, raw, where: str, path: str):
    """One comparison value, checked against what the reference holds."""
    if kind == DURATION:
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise ConditionError(path, f"{where}: {exc}") from None
    if kind == NUMBER:
        if type(raw) is int and not -2**63 <= raw < 2**63:  # isfinite() overflows on these
            raise ConditionError(path, f"{where} needs a number within 64 bits, got {raw!r}")
        if type(raw) not in _NUMBERS or not math.isfinite(raw):
            raise ConditionError(path, f"{where} needs a number, got {raw!r}")
        return raw
    if kind == STRING:
        if type(raw) is not str:
            raise ConditionError(path, f"{where} needs text, got {raw!r}")
        return raw
    # ANY: a field of events; lt/gt order numbers or strings, eq/in/contains take any primitive.
    allowed = (int, float, str) if op in ("lt", "lte", "gt", "gte") else (bool, int, float, str)
    if raw is None:
        raise ConditionError(path, f"{where} cannot compare with null "
                                   "(missing values never match; use exists: false)")
    if type(raw) not in allowed or (type(raw) is float and not math.isfinite(raw)):
        wanted = "a number or text" if op in ("lt", "lte", "gt", "gte") else \
            "a number, text or true/false"
        raise ConditionError(path, f"{where} needs {wanted}, got {raw!r}")
    return raw


def _describe(value) -> str:
    if isinstance(value, (dict, list)):
        return f"{type(value).__name__} {value!r}"[:80]
    return repr(value)
