"""The condition language: every reference reads the profile or the current event as
documented, every operator follows the missing-value and type rules, and every bad
condition is refused with the path of the bad node and what is wrong with it."""
import pytest

from state.conditions import (AllOf, Comparison, ConditionError, EvalContext, InSegment,
                              evaluate, parse_condition, referenced_segments, resolve,
                              to_source, uses_current_event)
from state.durations import DAY, HOUR, format_duration, parse_duration

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a whole day and hour
H = NOW // HOUR  # hour bucket of NOW: 490896
D = NOW // DAY  # day bucket of NOW: 20454

PROFILE = {
    "profile_id": "u1",
    "first_seen": NOW - 30 * DAY,
    "last_seen": NOW - 2 * HOUR,
    "counts": {"view": 12, "purchase": 2, "__metadata": 4},
    "hourly": {"view": {str(H): 3, str(H - 1): 2}},
    "daily": {"view": {str(D): 5, str(D - 10): 7}},
    "last_time": {"view": NOW - 2 * HOUR, "purchase": NOW - 3 * DAY},
    "last": {"attribute": {"pref_cd": 13, "plan": "free", "optin": True, "nick": None},
             "purchase": {"amount": 1200.0, "sku": "A-1"}},
    "aggregates": {"purchase": {"amount": {"sum": 3400.0, "min": 1200.0, "max": 2200.0,
                                           "n": 2}}},
    "request": {"id": "r-9", "values": {"path": "/search"}},
    "segments": ["tokyo"],
}
EVENT = {"event_id": "e-1", "name": "view", "visitor_id": "v1", "user_id": "u1", "time": NOW,
         "request_id": "r-9", "values": {"path": "/item/3", "price": 980, "tags": ["a", "b"]}}


def ctx(profile=PROFILE, event=EVENT, now=NOW, segments=("tokyo",)) -> EvalContext:
    return EvalContext(profile=profile, event=event, now=now, segments=frozenset(segments))


def holds(condition, **context) -> bool:
    return evaluate(parse_condition(condition), ctx(**context))


def value(reference: str, **context):
    return resolve(parse_condition({reference: {"exists": True}}).ref, ctx(**context))


def problem_of(condition, path="condition") -> ConditionError:
    with pytest.raises(ConditionError) as info:
        parse_condition(condition, path)
    return info.value


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize("text, ms", [
    ("500ms", 500), ("45s", 45_000), ("30m", 1_800_000), ("12h", 12 * HOUR), ("7d", 7 * DAY),
    ("2w", 14 * DAY), ("0s", 0), (250, 250), (0, 0),
])
def test_a_duration_is_a_number_and_one_unit_or_plain_milliseconds(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["7x", "1h30m", "1.5h", " 5s", "5 s", "", "5", "d", -1, True,
                                 None, 2.5])
def test_anything_else_is_not_a_duration(bad):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(bad)


def test_the_duration_error_says_what_is_expected():
    with pytest.raises(ValueError) as info:
        parse_duration("7x")
    assert str(info.value) == \
        "'7x' is not a duration: expected a number and one of ms, s, m, h, d, w"


@pytest.mark.parametrize("ms, text", [(7 * DAY, "7d"), (90 * DAY, "90d"), (3 * HOUR, "3h"),
                                      (90_000, "90s"), (1500, "1500ms"), (0, "0ms")])
def test_durations_are_written_back_in_their_largest_whole_unit(ms, text):
    assert format_duration(ms) == text
    assert parse_duration(text) == ms


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("reference, expected", [
    ("event.name", "view"),
    ("event.time", NOW),
    ("event.id", "e-1"),
    ("event.path", "/item/3"),
    ("event.price", 980),
    ("event.missing", None),
    ("attribute.pref_cd", 13),
    ("attribute.plan", "free"),
    ("attribute.nick", None),
    ("last.purchase.amount", 1200.0),
    ("last.purchase.sku", "A-1"),
    ("last.view.amount", None),
    ("count.view", 12),
    ("count.purchase", 2),
    ("count.never", 0),
    ("count.*", 18),
    ("sum.purchase.amount", 3400.0),
    ("min.purchase.amount", 1200.0),
    ("max.purchase.amount", 2200.0),
    ("avg.purchase.amount", 1700.0),
    ("avg.purchase.price", None),
    ("sum.view.amount", None),
    ("first_seen", NOW - 30 * DAY),
    ("last_seen", NOW - 2 * HOUR),
    ("since.first_seen", 30 * DAY),
    ("since.last_seen", 2 * HOUR),
    ("since.purchase", 3 * DAY),
    ("since.signup", None),
])
def test_each_reference_reads_its_documented_place(reference, expected):
    assert value(reference) == expected


def test_a_new_profile_has_no_values_but_counts_are_zero():
    empty = {"profile_id": "u2"}
    for reference in ("first_seen", "since.last_seen", "attribute.plan", "sum.purchase.amount",
                      "last.view.path", "since.view"):
        assert value(reference, profile=empty) is None
    assert value("count.view", profile=empty) == 0
    assert value("count.*", profile=empty) == 0


def test_without_a_current_event_event_references_are_missing():
    for reference in ("event.name", "event.time", "event.id", "event.path", "request.path"):
        assert value(reference, event=None) is None
    assert holds({"event.name": {"exists": False}}, event=None)


def test_request_metadata_is_read_only_for_the_current_request():
    assert value("request.path") == "/search"
    assert value("request.path", event={**EVENT, "request_id": "r-8"}) is None
    assert value("request.nothing") is None


def test_an_event_without_a_request_id_never_sees_request_metadata():
    no_request = {**PROFILE, "request": {"id": None, "values": {"path": "/search"}}}
    assert value("request.path", profile=no_request, event={**EVENT, "request_id": None}) is None
    assert value("request.path", profile={**PROFILE, "request": None}) is None


def test_the_metadata_event_itself_is_the_request():
    metadata = {**EVENT, "name": "__metadata", "request_id": "r-10",
                "values": {"path": "/cart"}}
    assert value("request.path", event=metadata) == "/cart"


def test_a_segment_reference_is_membership_in_the_context_segments():
    assert holds({"segment": "tokyo"})
    assert not holds({"segment": "osaka"})
    assert holds({"segment": "osaka"}, segments=("osaka",))


def test_all_any_and_not_combine_conditions():
    yes, no = {"segment": "tokyo"}, {"segment": "osaka"}
    assert holds({"all": [yes, yes]}) and not holds({"all": [yes, no]})
    assert holds({"any": [no, yes]}) and not holds({"any": [no, no]})
    assert holds({"not": no}) and not holds({"not": yes})
    assert holds({"all": [yes, {"not": {"any": [no, {"count.view": {"lt": 1}}]}}]})


# ---------------------------------------------------------------- count windows


def windowed(now, within, hourly=None, daily=None, name="view"):
    profile = {"hourly": {name: {str(k): n for k, n in (hourly or {}).items()}},
               "daily": {name: {str(k): n for k, n in (daily or {}).items()}}}
    return value(f"count.{name}", profile=profile, now=now) if within is None else resolve(
        parse_condition({f"count.{name}": {"within": within, "gte": 0}}).ref,
        ctx(profile=profile, now=now))


def test_a_window_counts_the_hour_buckets_that_overlap_it():
    now = NOW + 30 * 60_000  # half past the hour H
    buckets = {H - 3: 1000, H - 2: 100, H - 1: 10, H: 1}
    # (now - 2h, now] starts at half past H-2: buckets H-2, H-1 and H overlap it.
    assert windowed(now, "2h", hourly=buckets) == 111
    assert windowed(now, "1h", hourly=buckets) == 11
    assert windowed(now, "30m", hourly=buckets) == 1


def test_a_window_starting_exactly_on_an_hour_includes_that_hour():
    buckets = {H - 2: 100, H - 1: 10, H: 1}
    assert windowed(NOW, "1h", hourly=buckets) == 11


def test_buckets_after_now_are_not_in_the_window():
    # An event with a later time may have been applied before this one (out of order).
    assert windowed(NOW, "1h", hourly={H: 1, H + 1: 50}) == 1


def test_windows_up_to_seven_days_use_hour_buckets_and_longer_ones_day_buckets():
    hourly, daily = {H - 24 * 7: 1, H - 1: 2}, {D - 7: 100, D - 8: 1000}
    assert windowed(NOW, "7d", hourly=hourly, daily=daily) == 3
    assert windowed(NOW, "8d", hourly=hourly, daily=daily) == 1100
    assert windowed(NOW, "90d", daily={D - 90: 1, D - 91: 10, D: 5}) == 6


def test_a_day_window_counts_the_day_buckets_that_overlap_it():
    now = NOW + 12 * HOUR
    assert windowed(now, "10d", daily={D - 11: 1000, D - 10: 100, D - 9: 10, D: 1}) == 111


def test_count_star_counts_every_event_name_in_the_window():
    profile = {"hourly": {"view": {str(H): 2, str(H - 100): 9}, "buy": {str(H - 1): 1}}}
    cond = parse_condition({"count.*": {"within": "2h", "eq": 3}})
    assert evaluate(cond, ctx(profile=profile))


def test_a_windowed_count_of_an_unknown_event_is_zero():
    assert holds({"count.signup": {"within": "1d", "eq": 0}})


def test_a_window_is_compared_like_any_count():
    assert holds({"count.view": {"within": "1h", "gte": 5, "lt": 6}})  # buckets H-1 and H
    assert not holds({"count.view": {"within": "1h", "gte": 6}})


# ---------------------------------------------------------------- since


def test_since_compares_with_durations():
    assert holds({"since.last_seen": {"gte": "2h", "lt": "3h"}})
    assert holds({"since.first_seen": {"gt": "4w"}})
    assert holds({"since.purchase": {"eq": 3 * DAY}})  # a plain int is milliseconds
    assert holds({"since.purchase": {"in": ["1d", "3d"]}})
    assert not holds({"since.purchase": {"lt": "1d"}})


def test_since_an_event_that_never_happened_is_missing():
    assert not holds({"since.signup": {"gt": "1d"}})
    assert not holds({"since.signup": {"lt": "1d"}})
    assert holds({"since.signup": {"exists": False}})


def test_durations_are_parsed_once_when_the_condition_is_parsed():
    cond = parse_condition({"all": [{"since.view": {"gt": "7d"}},
                                    {"count.view": {"within": "12h", "gte": 1}}]})
    assert cond.items[0].checks[0].value == 7 * DAY
    assert cond.items[1].ref.within == 12 * HOUR
    assert cond.items[1].ref.bucket_size == HOUR


# ---------------------------------------------------------------- operators


@pytest.mark.parametrize("condition, expected", [
    ({"attribute.pref_cd": {"eq": 13}}, True),
    ({"attribute.pref_cd": {"eq": 13.0}}, True),  # numbers compare numerically
    ({"attribute.pref_cd": {"eq": 14}}, False),
    ({"attribute.pref_cd": {"eq": "13"}}, False),  # text is not a number
    ({"attribute.plan": {"eq": "free"}}, True),
    ({"attribute.optin": {"eq": True}}, True),
    ({"attribute.optin": {"eq": 1}}, False),  # true is not 1
    ({"attribute.plan": {"ne": "paid"}}, True),
    ({"attribute.plan": {"ne": "free"}}, False),
    ({"attribute.pref_cd": {"ne": 13.0}}, False),
    ({"attribute.pref_cd": {"ne": "13"}}, False),  # across types nothing holds, ne included
    ({"attribute.pref_cd": {"lt": 14}}, True),
    ({"attribute.pref_cd": {"lt": 13}}, False),
    ({"attribute.pref_cd": {"lte": 13}}, True),
    ({"attribute.pref_cd": {"gt": 12.5}}, True),
    ({"attribute.pref_cd": {"gt": 13}}, False),
    ({"attribute.pref_cd": {"gte": 13}}, True),
    ({"attribute.pref_cd": {"gt": "1"}}, False),  # a number and a string: false, no error
    ({"attribute.plan": {"lt": 5}}, False),
    ({"attribute.plan": {"gt": "apple"}}, True),  # strings order lexicographically
    ({"attribute.plan": {"lt": "apple"}}, False),
    ({"attribute.optin": {"gt": 0}}, False),  # true is not a number
    ({"attribute.optin": {"lte": 1}}, False),
    ({"attribute.pref_cd": {"in": [1, 13, 27]}}, True),
    ({"attribute.pref_cd": {"in": [13.0]}}, True),
    ({"attribute.pref_cd": {"in": ["13", 14]}}, False),
    ({"attribute.plan": {"in": ["free", "trial"]}}, True),
    ({"attribute.optin": {"in": [1]}}, False),
    ({"attribute.plan": {"contains": "re"}}, True),
    ({"attribute.plan": {"contains": "paid"}}, False),
    ({"attribute.pref_cd": {"contains": 1}}, False),  # a number contains nothing
    ({"event.tags": {"contains": "b"}}, True),  # a list contains its elements
    ({"event.tags": {"contains": "c"}}, False),
    ({"attribute.plan": {"exists": True}}, True),
    ({"attribute.plan": {"exists": False}}, False),
    ({"count.view": {"gte": 2, "lt": 10}}, False),  # several operators: all of them
    ({"count.view": {"gte": 2, "lt": 13}}, True),
    ({"count.never": {"exists": True}}, True),  # counts are never missing
    ({"count.never": {"eq": 0}}, True),
    ({"event.name": {"in": ["view", "click"]}}, True),
    ({"event.time": {"lte": NOW}}, True),
    ({"first_seen": {"lt": NOW}}, True),
    ({"avg.purchase.amount": {"gt": 1699.5}}, True),
])
def test_operators(condition, expected):
    assert holds(condition) is expected


@pytest.mark.parametrize("op, operand", [
    ("eq", 1), ("ne", 1), ("lt", 1), ("lte", 1), ("gt", 1), ("gte", 1), ("in", [1, "a"]),
    ("contains", "a"), ("exists", True),
])
def test_on_a_missing_value_every_operator_is_false(op, operand):
    assert not holds({"attribute.nick": {op: operand}})  # None
    assert not holds({"attribute.absent": {op: operand}})  # no such key
    assert not holds({"event.nothing": {op: operand}}, event=None)  # no current event


def test_on_a_missing_value_only_exists_false_holds():
    assert holds({"attribute.nick": {"exists": False}})
    assert holds({"attribute.absent": {"exists": False}})
    assert holds({"not": {"attribute.absent": {"ne": 1}}})  # ne is false too, so not(ne) holds


# ---------------------------------------------------------------- the tree


def test_a_condition_parses_into_a_tree_of_values():
    a = parse_condition({"all": [{"segment": "tokyo"}, {"attribute.pref_cd": {"eq": 13}}]})
    b = parse_condition({"all": [{"segment": "tokyo"}, {"attribute.pref_cd": {"eq": 13}}]})
    assert a == b and hash(a) == hash(b)
    assert isinstance(a, AllOf) and isinstance(a.items[0], InSegment)
    assert isinstance(a.items[1], Comparison)
    with pytest.raises(AttributeError):
        a.items = ()


def test_referenced_segments_finds_every_segment_reference():
    cond = parse_condition({"any": [{"segment": "a"}, {"not": {"all": [
        {"segment": "b"}, {"count.view": {"gt": 1}}, {"segment": "a"}]}}]})
    assert referenced_segments(cond) == {"a", "b"}
    assert referenced_segments(parse_condition({"count.view": {"gt": 1}})) == set()


@pytest.mark.parametrize("condition, expected", [
    ({"event.name": {"eq": "view"}}, True),
    ({"any": [{"segment": "a"}, {"not": {"request.path": {"exists": True}}}]}, True),
    ({"all": [{"segment": "a"}, {"attribute.x": {"eq": 1}}, {"since.view": {"lt": "1d"}}]},
     False),
])
def test_uses_current_event_tells_event_conditions_from_profile_conditions(condition, expected):
    assert uses_current_event(parse_condition(condition)) is expected


def test_a_parsed_condition_writes_back_to_the_same_condition():
    source = {"all": [{"count.view": {"within": "7d", "gte": 2}},
                      {"since.last_seen": {"gt": "36h", "in": ["1d", "2d"]}},
                      {"any": [{"attribute.pref_cd": {"in": [13, 27]}},
                               {"not": {"segment": "osaka"}}]},
                      {"event.path": {"contains": "/search", "exists": True}}]}
    cond = parse_condition(source)
    assert to_source(cond) == source
    assert parse_condition(to_source(cond)) == cond


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("condition, path, problem", [
    ([{"segment": "a"}], "condition", "expected a mapping, got list"),
    ("tokyo", "condition", "expected a mapping, got 'tokyo'"),
    ({}, "condition", "empty condition"),
    ({"segment": "a", "count.view": {"gt": 1}}, "condition",
     "exactly one key, got 2: 'segment', 'count.view'"),
    ({"profile.age": {"gt": 20}}, "condition", "unknown reference 'profile.age'"),
    ({"alll": [{"segment": "a"}]}, "condition", "expected all, any, not, segment or one of"),
    ({"count.view": {"greater": 1}}, "condition",
     "'count.view': unknown operator 'greater' (valid: eq, ne, lt, lte, gt, gte, in, "
     "contains, exists)"),
    ({"event.path": {"in": "/search"}}, "condition", "'event.path' in needs a non-empty list"),
    ({"event.path": {"in": []}}, "condition", "'event.path' in needs a non-empty list"),
    ({"event.path": {"in": ["/a", ["/b"]]}}, "condition", "'event.path' in needs a number, text"),
    ({"attribute.plan": {"exists": "yes"}}, "condition", "needs true or false, got 'yes'"),
    ({"count.view": {"lt": "ten"}}, "condition", "'count.view' lt needs a number, got 'ten'"),
    ({"count.view": {"eq": True}}, "condition", "'count.view' eq needs a number, got True"),
    ({"event.name": {"eq": 5}}, "condition", "'event.name' eq needs text, got 5"),
    ({"count.view": {"contains": "x"}}, "condition", "'count.view' is a number"),
    ({"attribute.plan": {"eq": None}}, "condition", "cannot compare with null"),
    ({"attribute.plan": {"lt": True}}, "condition", "needs a number or text, got True"),
    ({"since.last_seen": {"gt": "7 days"}}, "condition",
     "'since.last_seen' gt: '7 days' is not a duration"),
    ({"attribute.pref_cd": {"within": "7d", "eq": 13}}, "condition",
     "'within' is only allowed on count.* references"),
    ({"count.view": {"within": "91d", "gte": 1}}, "condition", "within is at most 90d"),
    ({"count.view": {"within": "1 week", "gte": 1}}, "condition", "within: '1 week' is not"),
    ({"count.view": {"within": "0h", "gte": 1}}, "condition", "within must be longer than 0"),
    ({"count.view": {"within": "1d"}}, "condition", "'count.view' has no operator"),
    ({"attribute.plan": "free"}, "condition", "'attribute.plan' needs operators"),
    ({"all": []}, "condition", "all needs a non-empty list of conditions"),
    ({"any": {"segment": "a"}}, "condition", "any needs a non-empty list"),
    ({"segment": "two words"}, "condition", "segment needs a segment id"),
    ({"attribute.pref cd": {"eq": 13}}, "condition", "'pref cd' is not a valid name"),
    ({"count.vi*ew": {"gt": 1}}, "condition", "'vi*ew' is not a valid name"),
    ({"last.view": {"eq": 1}}, "condition", "does not have the form last.<event>.<field>"),
    ({"sum.purchase": {"gt": 1}}, "condition", "does not have the form sum.<event>.<field>"),
    ({"event": {"eq": 1}}, "condition", "does not have the form event.<field>"),
    ({"since.a.b": {"gt": "1d"}}, "condition", "does not have the form since.<event>"),
    ({"not": [{"segment": "a"}]}, "condition.not", "expected a mapping, got list"),
    ({"all": [{"segment": "a"}, {"not": {"any": [{"segment": "b"}, {"count.x": {"gt": "1"}}]}}]},
     "condition.all[1].not.any[1]", "'count.x' gt needs a number"),
])
def test_a_bad_condition_names_the_place_and_the_problem(condition, path, problem):
    err = problem_of(condition)
    assert err.path == path
    assert problem in err.problem
    assert str(err) == f"{path}: {err.problem}"
    assert isinstance(err, ValueError)


def test_an_unknown_reference_lists_the_valid_kinds():
    problem = problem_of({"profile.age": {"gt": 20}}).problem
    for kind in ("event.<field>", "request.<field>", "attribute.<field>", "last.<event>.<field>",
                 "count.<event>", "sum.<event>.<field>", "avg.<event>.<field>", "first_seen",
                 "since.<event>"):
        assert kind in problem


def test_error_paths_start_at_the_given_path():
    err = problem_of({"any": [{"segment": "a"}, {"count.view": {}}]}, "segments[2].condition")
    assert err.path == "segments[2].condition.any[1]"
    assert str(err).startswith("segments[2].condition.any[1]: 'count.view' has no operator")


def test_a_number_beyond_64_bits_is_a_clear_error_not_an_overflow():
    with pytest.raises(ConditionError, match="needs a number within 64 bits"):
        parse_condition({"sum.purchase.amount": {"gt": 10**400}})
