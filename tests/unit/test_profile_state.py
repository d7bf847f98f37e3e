"""A profile's user data: how one event changes it (`record_event`) and how a visitor's history
is folded into a member on identify (`fold_visitor`)."""
import copy


from state.conditions import EvalContext, evaluate, parse_condition
from state.durations import DAY, HOUR, MINUTE
from state.profile import fold_visitor, new_profile, record_event

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a whole day and hour
H = T0 // HOUR
D = T0 // DAY


def event(name="view", t=T0, values=None, request_id=None, event_id="e") -> dict:
    return {"event_id": event_id, "name": name, "visitor_id": "v1", "user_id": None,
            "time": t, "request_id": request_id, "values": values or {}}


def profile_with(*events, pid="p1") -> dict:
    profile = new_profile(pid)
    for ev in events:
        record_event(profile, ev)
    return profile


# ---------------------------------------------------------------- record_event: times, counts


def test_the_first_event_sets_first_and_last_seen():
    p = profile_with(event(t=T0))
    assert (p["first_seen"], p["last_seen"]) == (T0, T0)


def test_later_and_earlier_events_widen_first_and_last_seen():
    p = profile_with(event(t=T0), event(t=T0 + HOUR), event(t=T0 - HOUR))
    assert (p["first_seen"], p["last_seen"]) == (T0 - HOUR, T0 + HOUR)


def test_events_are_counted_per_name():
    p = profile_with(event("view"), event("view"), event("purchase"))
    assert p["counts"] == {"view": 2, "purchase": 1}


def test_events_are_counted_in_hourly_and_daily_buckets():
    p = profile_with(event(t=T0), event(t=T0 + 10 * MINUTE), event(t=T0 + HOUR),
                     event(t=T0 + DAY))
    assert p["hourly"]["view"] == {str(H): 2, str(H + 1): 1, str(H + 24): 1}
    assert p["daily"]["view"] == {str(D): 3, str(D + 1): 1}


def test_hourly_buckets_older_than_seven_days_are_pruned():
    p = profile_with(event(t=T0), event(t=T0 + 6 * DAY), event(t=T0 + 8 * DAY))
    assert p["hourly"]["view"] == {str(H + 6 * 24): 1, str(H + 8 * 24): 1}
    assert p["daily"]["view"] == {str(D): 1, str(D + 6): 1, str(D + 8): 1}


def test_daily_buckets_older_than_ninety_days_are_pruned():
    p = profile_with(event(t=T0), event(t=T0 + 89 * DAY), event(t=T0 + 91 * DAY))
    assert p["daily"]["view"] == {str(D + 89): 1, str(D + 91): 1}
    assert p["counts"]["view"] == 3  # counts are never pruned


def test_an_event_inside_a_seven_day_window_is_still_counted_after_pruning():
    t1 = T0 + 30 * MINUTE + 7 * DAY - MINUTE  # the first view is 7 days minus a minute older
    p = profile_with(event(t=T0 + 30 * MINUTE), event(t=t1))
    in_window = parse_condition({"count.view": {"within": "7d", "eq": 2}})
    assert evaluate(in_window, EvalContext(p, None, t1, frozenset()))


def test_an_event_inside_a_ninety_day_window_is_still_counted_after_pruning():
    t1 = T0 + HOUR + 90 * DAY - MINUTE
    p = profile_with(event(t=T0 + HOUR), event(t=t1))
    in_window = parse_condition({"count.view": {"within": "90d", "eq": 2}})
    assert evaluate(in_window, EvalContext(p, None, t1, frozenset()))


# ---------------------------------------------------------------- record_event: latest values


def test_the_latest_values_are_kept_per_event_name():
    p = profile_with(event("attribute", values={"pref_cd": 13}),
                     event("view", t=T0 + 1, values={"path": "/a"}))
    assert p["last"] == {"attribute": {"pref_cd": 13}, "view": {"path": "/a"}}
    assert p["last_time"] == {"attribute": T0, "view": T0 + 1}


def test_a_newer_event_replaces_its_fields_and_keeps_the_others():
    p = profile_with(event("attribute", values={"pref_cd": 13, "plan": "free"}),
                     event("attribute", t=T0 + 1, values={"pref_cd": 27}))
    assert p["last"]["attribute"] == {"pref_cd": 27, "plan": "free"}
    assert p["last_time"]["attribute"] == T0 + 1


def test_a_late_event_does_not_overwrite_newer_latest_values_but_still_counts():
    p = profile_with(event("attribute", t=T0, values={"pref_cd": 13, "age": 30}),
                     event("attribute", t=T0 - DAY, values={"pref_cd": 1, "age": 20}))
    assert p["last"]["attribute"] == {"pref_cd": 13, "age": 30}
    assert p["last_time"]["attribute"] == T0
    assert p["counts"]["attribute"] == 2
    assert p["daily"]["attribute"] == {str(D): 1, str(D - 1): 1}
    assert p["aggregates"]["attribute"]["age"] == {"sum": 50.0, "min": 20.0, "max": 30.0, "n": 2}


def test_an_event_at_the_same_time_as_the_latest_updates_the_latest_values():
    p = profile_with(event("attribute", values={"pref_cd": 13}),
                     event("attribute", values={"pref_cd": 27}))
    assert p["last"]["attribute"] == {"pref_cd": 27}


# ---------------------------------------------------------------- record_event: aggregates


def test_numeric_values_are_aggregated_as_sum_min_max_and_n():
    p = profile_with(event("purchase", values={"amount": 1200}),
                     event("purchase", values={"amount": 800.5}),
                     event("purchase", values={"amount": 2000}))
    assert p["aggregates"] == {"purchase": {"amount": {"sum": 4000.5, "min": 800.5,
                                                       "max": 2000.0, "n": 3}}}


def test_booleans_text_and_null_are_not_aggregated():
    p = profile_with(event("purchase", values={"gift": True, "sku": "A-1", "note": None}))
    assert p["aggregates"] == {}
    p = profile_with(event("purchase", values={"amount": 5}),
                     event("purchase", values={"amount": True}))
    assert p["aggregates"]["purchase"]["amount"] == {"sum": 5.0, "min": 5.0, "max": 5.0, "n": 1}


# ---------------------------------------------------------------- record_event: request


def test_metadata_sets_the_current_request():
    p = profile_with(event("__metadata", request_id="r-1", values={"path": "/search"}))
    assert p["request"] == {"id": "r-1", "values": {"path": "/search"}}


def test_a_new_request_replaces_the_previous_one():
    p = profile_with(event("__metadata", request_id="r-1", values={"path": "/a"}),
                     event("__metadata", t=T0 + 1, request_id="r-2", values={"ref": "x"}))
    assert p["request"] == {"id": "r-2", "values": {"ref": "x"}}


def test_metadata_without_request_id_or_other_events_set_no_request():
    p = profile_with(event("__metadata", values={"path": "/a"}),
                     event("view", request_id="r-1", values={"path": "/b"}))
    assert p["request"] is None


def test_a_late_metadata_event_does_not_replace_a_newer_request():
    p = profile_with(event("__metadata", t=T0, request_id="r-2", values={"path": "/new"}),
                     event("__metadata", t=T0 - 1, request_id="r-1", values={"path": "/old"}))
    assert p["request"] == {"id": "r-2", "values": {"path": "/new"}}


# ---------------------------------------------------------------- fold_visitor


def folded(member: dict, visitor: dict) -> dict:
    member = copy.deepcopy(member)
    fold_visitor(member, visitor)
    return member


def test_folding_adds_counts_and_buckets():
    member = profile_with(event("view", t=T0), event("purchase", t=T0), pid="m1")
    visitor = profile_with(event("view", t=T0 + 1), event("view", t=T0 + HOUR), pid="v1")
    m = folded(member, visitor)
    assert m["counts"] == {"view": 3, "purchase": 1}
    assert m["hourly"]["view"] == {str(H): 2, str(H + 1): 1}
    assert m["daily"]["view"] == {str(D): 3}
    assert m["hourly"]["purchase"] == {str(H): 1}


def test_folding_widens_first_and_last_seen():
    member = profile_with(event(t=T0), pid="m1")
    visitor = profile_with(event(t=T0 - HOUR), event(t=T0 + HOUR), pid="v1")
    m = folded(member, visitor)
    assert (m["first_seen"], m["last_seen"]) == (T0 - HOUR, T0 + HOUR)


def test_folding_into_a_member_without_events_takes_the_visitors_times():
    m = folded(new_profile("m1"), profile_with(event(t=T0), pid="v1"))
    assert (m["first_seen"], m["last_seen"]) == (T0, T0)
    assert m["counts"] == {"view": 1}


def test_folding_an_empty_visitor_changes_nothing():
    member = profile_with(event("attribute", values={"age": 30}), pid="m1")
    assert folded(member, new_profile("v1")) == member


def test_latest_values_come_from_the_visitor_when_it_saw_the_name_last():
    member = profile_with(event("attribute", t=T0, values={"pref_cd": 13}), pid="m1")
    visitor = profile_with(event("attribute", t=T0 + 1, values={"pref_cd": 27}), pid="v1")
    m = folded(member, visitor)
    assert m["last"]["attribute"] == {"pref_cd": 27}
    assert m["last_time"]["attribute"] == T0 + 1


def test_latest_values_stay_the_members_when_it_saw_the_name_last():
    member = profile_with(event("attribute", t=T0 + 1, values={"pref_cd": 13}), pid="m1")
    visitor = profile_with(event("attribute", t=T0, values={"pref_cd": 27}), pid="v1")
    m = folded(member, visitor)
    assert m["last"]["attribute"] == {"pref_cd": 13}
    assert m["last_time"]["attribute"] == T0 + 1


def test_the_member_wins_a_tie_on_latest_values():
    member = profile_with(event("attribute", t=T0, values={"pref_cd": 13}), pid="m1")
    visitor = profile_with(event("attribute", t=T0, values={"pref_cd": 27}), pid="v1")
    assert folded(member, visitor)["last"]["attribute"] == {"pref_cd": 13}


def test_latest_values_of_a_name_only_the_visitor_saw_are_taken():
    member = profile_with(event("view", values={"path": "/a"}), pid="m1")
    visitor = profile_with(event("attribute", t=T0 - DAY, values={"plan": "gold"}), pid="v1")
    m = folded(member, visitor)
    assert m["last"] == {"view": {"path": "/a"}, "attribute": {"plan": "gold"}}
    assert m["last_time"]["attribute"] == T0 - DAY


def test_aggregates_combine():
    member = profile_with(event("purchase", values={"amount": 100}),
                          event("purchase", values={"amount": 300}), pid="m1")
    visitor = profile_with(event("purchase", values={"amount": 50, "items": 2}), pid="v1")
    m = folded(member, visitor)
    assert m["aggregates"]["purchase"] == {
        "amount": {"sum": 450.0, "min": 50.0, "max": 300.0, "n": 3},
        "items": {"sum": 2.0, "min": 2.0, "max": 2.0, "n": 1},
    }


def counters(**per_delivery) -> dict:
    return {d: {"total": total, "day": day, "day_count": n}
            for d, (total, day, n) in per_delivery.items()}


def with_deliveries(pid: str, deliveries: dict) -> dict:
    profile = profile_with(event(), pid=pid)
    profile["deliveries"] = deliveries
    return profile


def test_delivery_counters_add_up_on_the_same_day():
    m = folded(with_deliveries("m1", counters(banner=(3, D, 1))),
               with_deliveries("v1", counters(banner=(2, D, 2))))
    assert m["deliveries"] == counters(banner=(5, D, 3))


def test_the_later_day_of_delivery_counters_wins():
    m = folded(with_deliveries("m1", counters(banner=(3, D - 1, 1))),
               with_deliveries("v1", counters(banner=(2, D, 2))))
    assert m["deliveries"] == counters(banner=(5, D, 2))
    m = folded(with_deliveries("m1", counters(banner=(3, D, 1))),
               with_deliveries("v1", counters(banner=(2, D - 1, 2))))
    assert m["deliveries"] == counters(banner=(5, D, 1))


def test_delivery_counters_only_the_visitor_has_are_taken():
    m = folded(with_deliveries("m1", {}), with_deliveries("v1", counters(banner=(2, D, 1))))
    assert m["deliveries"] == counters(banner=(2, D, 1))


def test_folding_does_not_change_the_visitor():
    visitor = profile_with(event("purchase", values={"amount": 5}), pid="v1")
    visitor["deliveries"] = counters(banner=(1, D, 1))
    before = copy.deepcopy(visitor)
    m = folded(profile_with(event("purchase", values={"amount": 7}), pid="m1"), visitor)
    m["hourly"]["purchase"][str(H)] += 10
    m["aggregates"]["purchase"]["amount"]["n"] += 10
    m["deliveries"]["banner"]["total"] += 10
    assert visitor == before
