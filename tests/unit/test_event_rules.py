"""The rules an input event must follow: each broken rule is refused with its stable reason
code (the code the dead-letter topic carries), valid events of every keying pass, and an
event belongs to its member when it names one."""
import pytest

from state.events import (MAX_AHEAD, MAX_EVENT_BYTES, MAX_FIELDS, MAX_STRING, MIN_TIME,
                          canonical_id, check_event, check_framing, check_size)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the record's timestamp in these tests


def event(**changes) -> dict:
    """A valid anonymous `view` event keyed by its visitor id, with `changes` applied."""
    base = {"event_id": "e-1", "name": "view", "visitor_id": "v1", "user_id": None,
            "time": NOW, "request_id": None, "values": {"path": "/search"}}
    return {**base, **changes}


def code(key: bytes | None, ev: dict, timestamp: int = NOW) -> str | None:
    rejection = check_event(key, ev, timestamp)
    if rejection is not None:
        assert rejection.reason  # every rejection says why, for the dead-letter record
    return None if rejection is None else rejection.code


# ---------------------------------------------------------------- check_size


def test_a_record_without_value_is_empty():
    assert check_size(None).code == "empty"
    assert check_size(b"").code == "empty"


def test_a_record_over_the_limit_is_oversized():
    assert check_size(b"x" * (MAX_EVENT_BYTES + 1)).code == "oversized"
    assert check_size(b"x" * 11, limit=10).code == "oversized"


def test_a_record_at_the_limit_passes_the_size_check():
    assert check_size(b"x" * MAX_EVENT_BYTES) is None
    assert check_size(b"x" * 10, limit=10) is None


# ---------------------------------------------------------------- check_framing


def test_confluent_framing_is_named_with_its_schema_id():
    # Confluent Schema Registry's wire format: byte 0, schema id 4242 (big-endian), the body.
    rejection = check_framing(b"\x00\x00\x00\x10\x92" + b"\x02v1")
    assert rejection.code == "confluent_wire_format"
    assert "Confluent Schema Registry wire format" in rejection.reason
    assert "schema id 4242" in rejection.reason
    assert "single-object encoding" in rejection.reason and "docs/producers.md" in rejection.reason


def test_other_framings_are_left_to_the_codec():
    assert check_framing(b"\xc3\x01" + b"\x00" * 12) is None  # single-object
    assert check_framing(b'{"name": "view"}') is None  # JSON
    assert check_framing(b"\x00\x00\x01") is None  # too short to hold a schema id


# ---------------------------------------------------------------- valid events


def test_an_anonymous_event_keyed_by_its_visitor_id_is_valid():
    assert code(b"v1", event()) is None


def test_a_member_event_keyed_by_its_user_id_is_valid():
    assert code(b"u1", event(visitor_id=None, user_id="u1")) is None


def test_an_event_with_visitor_and_user_id_keyed_by_the_visitor_id_is_valid():
    assert code(b"v1", event(user_id="u1")) is None


def test_identify_keyed_by_the_visitor_id_is_valid():
    assert code(b"v1", event(name="identify", user_id="u1", values={})) is None


def test_request_metadata_is_a_valid_event():
    assert code(b"v1", event(name="__metadata", request_id="r-1",
                             values={"path": "/search"})) is None


def test_limits_themselves_are_allowed():
    many = {f"f{i}": i for i in range(MAX_FIELDS)}
    assert code(b"v1", event(values=many)) is None
    assert code(b"v1", event(values={"text": "x" * MAX_STRING})) is None
    assert code(b"v1", event(time=MIN_TIME)) is None
    assert code(b"v1", event(time=NOW + MAX_AHEAD)) is None


def test_values_of_every_primitive_type_are_valid():
    assert code(b"v1", event(values={"s": "a", "i": 1, "f": 1.5, "b": True, "n": None})) is None


# ---------------------------------------------------------------- check_event rejections


def test_a_record_without_key_is_missing_key():
    assert code(None, event()) == "missing_key"


def test_a_key_that_is_not_utf8_is_bad_key():
    assert code(b"\xff\xfe", event()) == "bad_key"


def test_an_empty_event_id_is_missing_event_id():
    assert code(b"v1", event(event_id="")) == "missing_event_id"


@pytest.mark.parametrize("name", ["", "has space", "a/b", "-view", "x" * 65, "ビュー"])
def test_a_name_outside_the_allowed_characters_is_bad_name(name):
    assert code(b"v1", event(name=name)) == "bad_name"


def test_a_name_with_a_trailing_newline_is_bad_name():
    assert code(b"v1", event(name="view\n")) == "bad_name"


def test_an_unknown_double_underscore_name_is_reserved_name():
    assert code(b"v1", event(name="__custom")) == "reserved_name"


def test_wakeup_events_come_only_from_the_engine():
    assert code(b"v1", event(name="__wakeup")) == "reserved_name"


def test_an_event_without_visitor_and_user_id_is_missing_id():
    assert code(b"v1", event(visitor_id=None, user_id=None)) == "missing_id"
    assert code(b"v1", event(visitor_id="", user_id="")) == "missing_id"


def test_identify_without_user_id_is_bad_identify():
    assert code(b"v1", event(name="identify")) == "bad_identify"


def test_identify_without_visitor_id_is_bad_identify():
    assert code(b"u1", event(name="identify", visitor_id=None, user_id="u1")) == "bad_identify"


def test_an_anonymous_event_keyed_by_another_id_is_wrong_key():
    assert code(b"v2", event()) == "wrong_key"


def test_an_event_with_a_visitor_id_keyed_by_its_user_id_is_wrong_key():
    assert code(b"u1", event(user_id="u1")) == "wrong_key"


def test_identify_keyed_by_the_user_id_is_wrong_key():
    assert code(b"u1", event(name="identify", user_id="u1", values={})) == "wrong_key"


def test_an_event_time_before_2000_is_time_too_old():
    assert code(b"v1", event(time=MIN_TIME - 1)) == "time_too_old"


def test_an_event_time_more_than_a_day_after_the_record_is_time_in_future():
    assert code(b"v1", event(time=NOW + MAX_AHEAD + 1)) == "time_in_future"


def test_more_than_the_maximum_number_of_values_is_too_many_fields():
    many = {f"f{i}": i for i in range(MAX_FIELDS + 1)}
    assert code(b"v1", event(values=many)) == "too_many_fields"


@pytest.mark.parametrize("field", ["", "has space", "a.b", "x" * 65])
def test_a_bad_field_name_is_bad_field(field):
    assert code(b"v1", event(values={field: 1})) == "bad_field"


def test_a_text_value_over_the_maximum_length_is_value_too_long():
    assert code(b"v1", event(values={"text": "x" * (MAX_STRING + 1)})) == "value_too_long"


def test_a_nan_value_is_bad_value():
    assert code(b"v1", event(values={"price": float("nan")})) == "bad_value"


# ---------------------------------------------------------------- canonical_id


def test_the_canonical_id_is_the_user_id_when_known():
    assert canonical_id(event(user_id="u1")) == "u1"


def test_the_canonical_id_of_an_anonymous_event_is_its_visitor_id():
    assert canonical_id(event()) == "v1"
