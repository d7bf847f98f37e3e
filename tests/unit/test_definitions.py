"""Definition files: segments and deliveries load from YAML into checked, ordered values;
every problem of a file is reported at once with its path; definitions travel as records
and come back equal; the A/B split is deterministic and follows the weights."""
import json
import textwrap

import pytest

from state.conditions import InSegment, parse_condition
from state.definitions import (DefinitionError, DefinitionSet, Delivery, Segment, Variant,
                               choose_variant, from_records, load_definitions, to_records)

EXAMPLE = """
segments:
  - id: tokyo
    description: lives in Tokyo
    condition: {attribute.pref_cd: {eq: 13}}
  - id: tokyo_buyers
    condition: {all: [{segment: tokyo}, {count.purchase: {gte: 1}}]}
deliveries:
  - id: search_banner
    segment: tokyo
    trigger: {all: [{event.name: {eq: view}}, {request.path: {eq: /search}}]}
    limits: {total: 3, per_day: 1}
    variants:
      - {id: a, weight: 50, payload: {banner: spring}}
      - {id: b, weight: 50, payload: {banner: summer}}
  - id: welcome
    segment: tokyo_buyers
    trigger: {event.name: {eq: purchase}}
journeys:
  - id: onboarding
    entry: {segment: tokyo}
    stages: [{id: welcome, steps: [{id: bye, kind: end}]}]
"""


def load(text: str, existing=None) -> DefinitionSet:
    return load_definitions(textwrap.dedent(text), existing)


def errors_of(text: str, existing=None) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        load(text, existing)
    return info.value.errors


# ---------------------------------------------------------------- loading


def test_a_file_loads_into_segments_and_deliveries():
    defs = load(EXAMPLE)
    tokyo, buyers = defs.segments
    assert tokyo == Segment("tokyo", parse_condition({"attribute.pref_cd": {"eq": 13}}),
                            "lives in Tokyo")
    assert buyers.id == "tokyo_buyers" and buyers.description is None
    banner, welcome = defs.deliveries
    assert (banner.id, banner.segment, banner.limits_total, banner.limits_per_day) == \
        ("search_banner", "tokyo", 3, 1)
    assert banner.trigger == parse_condition(
        {"all": [{"event.name": {"eq": "view"}}, {"request.path": {"eq": "/search"}}]})
    assert banner.variants == (Variant("a", 50, {"banner": "spring"}),
                               Variant("b", 50, {"banner": "summer"}))
    assert (welcome.limits_total, welcome.limits_per_day) == (None, None)


def test_a_delivery_without_variants_has_one_default_variant():
    welcome = load(EXAMPLE).deliveries[1]
    assert welcome.variants == (Variant("default", 100, {}),)


def test_journeys_are_loaded_and_keep_their_plain_bodies():
    assert load(EXAMPLE).raw_journeys == ({"id": "onboarding", "entry": {"segment": "tokyo"},
                                           "stages": [{"id": "welcome", "steps": [
                                               {"id": "bye", "kind": "end"}]}]},)


def test_an_already_parsed_mapping_loads_like_yaml_text():
    import yaml
    assert load_definitions(yaml.safe_load(EXAMPLE)) == load(EXAMPLE)


def test_an_empty_file_defines_nothing():
    assert load("") == DefinitionSet()
    assert load("segments: []\ndeliveries:\n") == DefinitionSet()


def test_segments_come_after_the_segments_they_reference():
    defs = load("""
        segments:
          - {id: c, condition: {all: [{segment: b}, {segment: x}]}}
          - {id: b, condition: {segment: a}}
          - {id: x, condition: {count.view: {gt: 1}}}
          - {id: a, condition: {count.view: {gt: 2}}}
          - {id: y, condition: {count.view: {gt: 3}}}
    """)
    # a before b before c, x before c; otherwise the file's order.
    assert [s.id for s in defs.segments] == ["x", "a", "b", "c", "y"]


def test_segments_already_in_order_keep_the_file_order():
    defs = load("""
        segments:
          - {id: z, condition: {count.view: {gt: 1}}}
          - {id: m, condition: {segment: z}}
          - {id: a, condition: {count.view: {gt: 1}}}
    """)
    assert [s.id for s in defs.segments] == ["z", "m", "a"]


def test_a_file_may_reference_segments_applied_before():
    first = load(EXAMPLE)
    second = load("""
        segments:
          - id: tokyo_vip
            condition: {all: [{segment: tokyo_buyers}, {sum.purchase.amount: {gte: 10000}}]}
        deliveries:
          - {id: vip_coupon, segment: tokyo, trigger: {segment: tokyo_vip}}
    """, existing=first)
    assert [s.id for s in second.segments] == ["tokyo", "tokyo_buyers", "tokyo_vip"]
    assert [d.id for d in second.deliveries] == ["search_banner", "welcome", "vip_coupon"]
    assert second.raw_journeys == first.raw_journeys


def test_an_item_with_the_same_id_replaces_the_one_applied_before_in_its_place():
    first = load(EXAMPLE)
    second = load("""
        segments:
          - {id: tokyo, condition: {attribute.pref_cd: {in: [13, 14]}}}
        journeys:
          - id: onboarding
            entry: {segment: tokyo}
            stages: [{id: first, steps: [{id: bye, kind: end}]}]
    """, existing=first)
    assert [s.id for s in second.segments] == ["tokyo", "tokyo_buyers"]
    assert second.segments[0].condition == parse_condition({"attribute.pref_cd": {"in": [13, 14]}})
    assert second.segments[0].description is None
    assert second.deliveries == first.deliveries
    assert second.raw_journeys == ({"id": "onboarding", "entry": {"segment": "tokyo"},
                                    "stages": [{"id": "first", "steps": [
                                        {"id": "bye", "kind": "end"}]}]},)
    assert [j.version for j in second.journeys] == [2]


def test_definitions_are_values():
    assert load(EXAMPLE) == load(EXAMPLE)
    with pytest.raises(AttributeError):
        load(EXAMPLE).segments[0].id = "osaka"


# ---------------------------------------------------------------- errors

SEG = "{id: ok, condition: {count.view: {gt: 1}}}"


@pytest.mark.parametrize("text, path, problem", [
    ("segments: [", "definitions", "not valid YAML"),
    ("- {id: a}", "definitions", "expected a mapping with segments, deliveries and journeys"),
    ("segmets: []", "segmets", "unknown top-level key (allowed: segments, deliveries, journeys, "
                               "time_zone, quiet_hours, caps)"),
    ("segments: {id: a}", "segments", "expected a list, got dict"),
    ("segments: [tokyo]", "segments[0]", "expected a mapping (id, condition), got str"),
    ("segments: [{condition: {count.view: {gt: 1}}}]", "segments[0].id",
     "missing: every segment needs an id"),
    ("segments: [{id: tokyo city, condition: {count.view: {gt: 1}}}]", "segments[0].id",
     "'tokyo city' is not a valid id"),
    (f"segments: [{{id: {'a' * 65}, condition: {{count.view: {{gt: 1}}}}}}]", "segments[0].id",
     "is not a valid id: 1 to 64 letters, digits, _ or -"),
    ("segments: [{id: 13, condition: {count.view: {gt: 1}}}]", "segments[0].id",
     "13 is not a valid id"),
    (f"segments: [{SEG}, {SEG}]", "segments[1].id",
     "duplicate segment id 'ok' (also at segments[0])"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{segment: ok}}}}, "
     "{id: d, segment: ok, trigger: {segment: ok}}]",
     "deliveries[1].id", "duplicate delivery id 'd' (also at deliveries[0])"),
    ("segments: [{id: a, condition: {count.view: {gt: 1}}, owner: me, tags: []}]", "segments[0]",
     "unknown keys 'owner', 'tags' (allowed: id, description, condition, sql)"),
    ("segments: [{id: a}]", "segments[0].condition", "missing"),
    ("segments: [{id: a, condition: {count.view: {gt: 1}}, description: 5}]",
     "segments[0].description", "expected text"),
    (f"segments: [{SEG}, {{id: b, condition: {{all: [{{count.view: {{gtt: 1}}}}]}}}}]",
     "segments[1].condition.all[0]", "unknown operator 'gtt'"),
    ("segments: [{id: a, condition: {all: [{count.view: {gt: 1}}, {event.name: {eq: view}}]}}]",
     "segments[0].condition.all[1]", "a segment judges the profile, not one event: 'event.name'"),
    ("segments: [{id: a, condition: {not: {request.path: {eq: /}}}}]",
     "segments[0].condition.not", "a segment judges the profile, not one event: 'request.path'"),
    ("segments: [{id: a, condition: {any: [{count.view: {gt: 1}}, {segment: ghost}]}}]",
     "segments[0].condition.any[1]", "unknown segment 'ghost'"),
    ("segments: [{id: a, condition: {segment: a}}]", "segments[0].condition",
     "segments reference each other in a cycle: a -> a"),
    ("segments: [{id: a, condition: {segment: b}}, {id: b, condition: {not: {segment: a}}}]",
     "segments[0].condition", "segments reference each other in a cycle: a -> b -> a"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ghost, trigger: {{segment: ok}}}}]",
     "deliveries[0].segment", "unknown segment 'ghost'"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, trigger: {{segment: ok}}}}]",
     "deliveries[0].segment", "missing: a delivery needs a target segment"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok}}]", "deliveries[0].trigger",
     "missing"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: "
     "{any: [{event.name: {eq: view}}, {segment: vip}]}}]",
     "deliveries[0].trigger.any[1]", "unknown segment 'vip'"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{segment: ok}}, "
     "target: ok}]", "deliveries[0]",
     "unknown key 'target' (allowed: id, segment, trigger, limits, destination, priority, "
     "quiet_hours, variants)"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "limits: {total: 0}}]", "deliveries[0].limits.total", "expected a positive integer, got 0"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "limits: {per_day: '3'}}]", "deliveries[0].limits.per_day",
     "expected a positive integer, got '3'"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "limits: {weekly: 3}}]", "deliveries[0].limits",
     "unknown key 'weekly' (allowed: total, per_day)"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: []}]", "deliveries[0].variants", "expected a non-empty list of variants"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: [{id: a, weight: 50}, {id: a, weight: 50}]}]", "deliveries[0].variants[1].id",
     "duplicate variant id 'a' (also at deliveries[0].variants[0])"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: [{id: a, weight: 50}, {id: b, weight: 40}]}]", "deliveries[0].variants",
     "weights sum to 90; they must sum to exactly 100"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: [{id: a, weight: 50.5}, {id: b, weight: 50}]}]",
     "deliveries[0].variants[0].weight", "expected an integer >= 0, got 50.5"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: [{id: a, weight: 110}, {id: b, weight: -10}]}]",
     "deliveries[0].variants[1].weight", "expected an integer >= 0, got -10"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: [{weight: 100}]}]", "deliveries[0].variants[0].id", "missing"),
    (f"segments: [{SEG}]\ndeliveries: [{{id: d, segment: ok, trigger: {{event.x: {{eq: 1}}}}, "
     "variants: [{id: a, weight: 100, payload: {banner: {color: red}}}]}]",
     "deliveries[0].variants[0].payload", "expected a mapping of text keys to values"),
    ("journeys: {id: j}", "journeys", "expected a list, got dict"),
])
def test_a_bad_file_names_the_place_and_the_problem(text, path, problem):
    errors = errors_of(text)
    assert [p for p, _ in errors] == [path], errors
    assert problem in errors[0][1]


def test_every_problem_of_a_file_is_reported_at_once_one_per_line():
    with pytest.raises(DefinitionError) as info:
        load("""
            segments:
              - {id: a, condition: {count.view: {gt: x}}}
              - {id: a, condition: {segment: ghost}}
            deliveries:
              - {id: d, segment: nowhere, trigger: {event.name: {eq: view}}, limits: {total: -1}}
            extra: 1
        """)
    err = info.value
    assert err.errors == [
        ("extra", "unknown top-level key (allowed: segments, deliveries, journeys, time_zone, "
         "quiet_hours, caps)"),
        ("segments[1].id", "duplicate segment id 'a' (also at segments[0])"),
        ("segments[0].condition", "'count.view' gt needs a number, got 'x'"),
        ("segments[1].condition", "unknown segment 'ghost'"),
        ("deliveries[0].segment", "unknown segment 'nowhere'"),
        ("deliveries[0].limits.total", "expected a positive integer, got -1"),
    ]
    assert str(err).splitlines() == [f"{path}: {problem}" for path, problem in err.errors]
    assert isinstance(err, ValueError)


def test_a_file_that_closes_a_cycle_through_earlier_segments_is_refused():
    first = load("""
        segments:
          - {id: a, condition: {count.view: {gt: 1}}}
          - {id: b, condition: {segment: a}}
          - {id: c, condition: {segment: b}}
    """)
    errors = errors_of("segments: [{id: a, condition: {segment: c}}]", existing=first)
    assert errors == [("segments[0].condition",
                       "segments reference each other in a cycle: a -> c -> b -> a")]


def test_a_misspelt_key_is_reported_with_what_it_leaves_missing():
    assert errors_of("segments: [{id: a, conditon: {count.view: {gt: 1}}}]") == [
        ("segments[0]", "unknown key 'conditon' (allowed: id, description, condition, sql)"),
        ("segments[0].condition", "missing"),
    ]


def test_a_segment_is_unknown_until_it_is_defined_somewhere():
    errors = errors_of("deliveries: [{id: d, segment: tokyo, trigger: {event.name: {eq: v}}}]")
    assert errors == [("deliveries[0].segment", "unknown segment 'tokyo'")]
    defs = load("deliveries: [{id: d, segment: tokyo, trigger: {event.name: {eq: v}}}]",
                existing=load(EXAMPLE))
    assert defs.deliveries[-1].segment == "tokyo"


# ---------------------------------------------------------------- records


def test_each_item_is_one_record_of_plain_json():
    records = to_records(load(EXAMPLE))
    assert [key for key, _ in records] == ["segment:tokyo", "segment:tokyo_buyers",
                                           "delivery:search_banner", "delivery:welcome",
                                           "journey:onboarding"]
    assert json.loads(json.dumps(records)) == [list(r) for r in records]
    assert dict(records)["segment:tokyo"] == {
        "id": "tokyo", "description": "lives in Tokyo",
        "condition": {"attribute.pref_cd": {"eq": 13}}}
    assert dict(records)["delivery:search_banner"]["limits"] == {"total": 3, "per_day": 1}


def test_records_come_back_as_equal_definitions():
    defs = load(EXAMPLE)
    assert from_records(to_records(defs)) == defs
    through_json = json.loads(json.dumps(to_records(defs)))
    assert from_records(through_json) == defs


def test_records_round_trip_durations_and_windows():
    defs = load("""
        segments:
          - {id: lapsed, condition: {all: [{since.last_seen: {gt: 30d}},
                                           {count.view: {within: 36h, lt: 3}}]}}
    """)
    record = dict(to_records(defs))["segment:lapsed"]
    assert record["condition"] == {"all": [{"since.last_seen": {"gt": "30d"}},
                                           {"count.view": {"within": "36h", "lt": 3}}]}
    assert from_records(to_records(defs)) == defs


def test_a_later_record_replaces_an_earlier_one_and_none_deletes_it():
    records = to_records(load(EXAMPLE))
    newer = ("delivery:welcome", {"id": "welcome", "segment": "tokyo",
                                  "trigger": {"event.name": {"eq": "signup"}}})
    defs = from_records(records + [newer, ("journey:onboarding", None)])
    assert defs.deliveries[-1].segment == "tokyo"
    assert defs.raw_journeys == ()


def test_records_are_validated_again_when_read():
    records = to_records(load(EXAMPLE)) + [("segment:tokyo", None)]  # still referenced
    with pytest.raises(DefinitionError, match="unknown segment 'tokyo'"):
        from_records(records)
    with pytest.raises(DefinitionError, match="unknown record kind"):
        from_records([("campaign:x", {"id": "x"})])
    with pytest.raises(DefinitionError, match="has id 'b'"):
        from_records([("segment:a", {"id": "b", "condition": {"count.view": {"gt": 1}}})])


# ---------------------------------------------------------------- A/B split

AB = Delivery("banner", "tokyo", InSegment("tokyo"),
              variants=(Variant("a", 50, {}), Variant("b", 30, {}), Variant("c", 20, {}),
                        Variant("off", 0, {})))


def test_a_profile_always_gets_the_same_variant():
    assert all(choose_variant(AB, f"u{i}") == choose_variant(AB, f"u{i}") for i in range(200))


def test_the_choice_does_not_change_between_releases():
    # Changing the hash would move every profile to another variant mid-test.
    assert [choose_variant(AB, p).id for p in ("u1", "u2", "u3", "visitor-42", "")] == \
        PINNED_CHOICES


PINNED_CHOICES = ["b", "a", "a", "a", "a"]


def test_the_split_follows_the_weights():
    counts = {"a": 0, "b": 0, "c": 0, "off": 0}
    for i in range(10_000):
        counts[choose_variant(AB, f"profile-{i}").id] += 1
    assert abs(counts["a"] / 100 - 50) <= 2
    assert abs(counts["b"] / 100 - 30) <= 2
    assert abs(counts["c"] / 100 - 20) <= 2
    assert counts["off"] == 0  # weight 0: never chosen


def test_each_delivery_splits_independently():
    other = Delivery("coupon", "tokyo", InSegment("tokyo"),
                     variants=(Variant("a", 50, {}), Variant("b", 50, {})))
    mine = Delivery("banner", "tokyo", InSegment("tokyo"),
                    variants=(Variant("a", 50, {}), Variant("b", 50, {})))
    same = sum(choose_variant(mine, f"p{i}").id == choose_variant(other, f"p{i}").id
               for i in range(10_000))
    assert 4_800 <= same <= 5_200  # about half agree: the delivery id is part of the key


def test_the_default_variant_is_always_chosen():
    welcome = load(EXAMPLE).deliveries[1]
    assert {choose_variant(welcome, f"u{i}").id for i in range(100)} == {"default"}
