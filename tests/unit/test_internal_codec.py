"""The worker's own records in msgpack (schemas/internal.py): profiles and profile inputs decode
to exactly what the Avro codec gives (same keys, same types), records written by the released
version (Avro single-object) are read, and a record of an unknown format is refused by name."""
import copy
from collections import defaultdict, deque

import pytest

from bench.domain import apply, route
from bench.pipeline import DEFINITIONS, build_workload
from cjo.settings import Settings
from schemas import current, released_schemas
from schemas.codec import AvroCodec, CodecError
from schemas.internal import (FORMAT_SCHEMAS, HEADER, LARGE, MAGIC, VERSION, InternalCodec,
                              ProfileInputCodec, codec_for)
from state.definitions import load_definitions
from state.processing import step
from state.profile import Limits, new_profile
from tests.unit.test_limits import example_journey_record, ev, recorded, worst_profile
from topology.machinery.wire import WorkerWire

PROFILES = InternalCodec("profile", "t-profiles-changelog")
AVRO = AvroCodec("profile", "t-profiles-changelog")
INPUTS = ProfileInputCodec("t.profile-inputs")
AVRO_INPUTS = AvroCodec("profile_input", "t.profile-inputs")
EVENTS = AvroCodec("event", "t.events")
T0 = 1_767_225_600_000


def same(a, b, path="record") -> None:
    """a == b, and of the same type at every level (1 == 1.0 and [1] != (1,) for ==)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def through_avro(record: dict) -> dict:
    return AVRO.decode(AVRO.encode(record))


def input_through_avro(record: dict) -> dict:
    """The input as the released worker wrote it (the event's Avro bytes), read now."""
    return INPUTS.decode(AVRO_INPUTS.encode(INPUTS._to_avro(record)))


@pytest.fixture(scope="module")
def workload():
    """Profiles and inputs as state.processing makes them on the benchmark's workload (20
    segments, 3 deliveries, 5 journeys, merges), in memory as `step` left them."""
    wire = WorkerWire(Settings().with_(app_id="t"))
    defs = load_definitions(DEFINITIONS)
    store, aliases, offsets, phases, inputs = {}, {}, {0: 0}, defaultdict(float), deque()
    latest, made = {}, []
    for n, (_, event) in enumerate(build_workload(4000, 2500)):
        for record in route(EVENTS.decode(EVENTS.encode(event)), n, aliases):
            made.append(record)
            inputs.append(wire.encode_input(record))
        while inputs:
            data = inputs[0]
            made.append(wire.decode_input(data))
            profile = apply(inputs.popleft(), store, wire, defs, offsets, phases, inputs)
            latest[profile["profile_id"]] = copy.deepcopy(profile)
    return list(latest.values()), made


def test_real_profiles_decode_as_from_avro(workload):
    profiles, _ = workload
    # (held inputs: test_a_worker_upgraded_over_a_merge_under_way_finishes_it)
    kinds = {"journeys": 0, "aggregates": 0, "request": 0, "deliveries": 0, "outbox": 0,
             "merged_into": 0}
    for p in profiles:
        data = PROFILES.encode(p)
        assert data[:3] == HEADER
        same(PROFILES.decode(data), through_avro(p))
        for k in kinds:
            kinds[k] += bool(p[k])
    assert all(kinds.values()), kinds  # the workload reaches every part of a profile


def test_real_inputs_decode_as_from_avro(workload):
    _, inputs = workload
    assert {r["kind"] for r in inputs} == {"event", "identify", "merge_out", "merge_in"}
    for record in inputs:
        same(INPUTS.decode(INPUTS.encode(record)), input_through_avro(record))


def test_fixture_profiles_decode_as_from_avro():
    limited = recorded(ev("view", values={f"f{k}": k for k in range(5)}),
                       ev("attribute", values={"plan": "x" * 100, "n": 1.5, "ok": True}),
                       limits=Limits(max_fields=3))
    assert limited["limited"]
    journeys = {**new_profile("j"), "journeys": {"j": example_journey_record()}}
    for p in (new_profile("p"), limited, journeys):
        same(PROFILES.decode(PROFILES.encode(p)), through_avro(p))
    worst = worst_profile()  # past LARGE: written in Avro, decoded the same
    data = PROFILES.encode(worst)
    assert data == AVRO.encode(worst)
    same(PROFILES.decode(data), through_avro(worst))


def test_a_record_past_large_is_written_in_avro():
    small = InternalCodec("profile", "t", large=200)
    p = recorded(ev("view", values={"path": "/x" * 50}))
    assert len(PROFILES.encode(p)) > 200
    assert small.encode(p) == AVRO.encode(p)
    same(small.decode(small.encode(p)), PROFILES.decode(PROFILES.encode(p)))
    record = {"kind": "event", "profile_id": "p", "source_partition": 0, "source_offset": 1,
              "event": ev("view", values={"path": "/x" * 100})}
    small_inputs = ProfileInputCodec("t", large=200)
    data = small_inputs.encode(record)
    assert data[:2] == b"\xc3\x01"
    same(small_inputs.decode(data), INPUTS.decode(INPUTS.encode(record)))
    assert LARGE + 10_000 < 1_000_000  # Kafka's record size (test_limits: Avro's bound)


# ---------------------------------------------------------------- the released version


def test_a_profile_of_the_released_schema_decodes_to_what_the_new_code_expects(workload):
    profiles, _ = workload
    released = {s.file: AvroCodec("profile", "t", schema=s)
                for s in released_schemas()["profile"]}
    v2, v3, v4 = released["profile.v2"], released["profile.v3"], released["profile.v4"]
    v5, v6 = released["profile.v5"], released["profile.v6"]
    with_journeys = [p for p in profiles if p["journeys"]][:50]
    assert with_journeys
    for p in with_journeys:
        p = {**p, "sends": {"email": [T0, T0 + 1]}, "event_ids": {"k": T0}, "duplicates": 2,
             "merge_times": {"3": T0}, "merge_crossings": 1}
        expected = copy.deepcopy(p)
        expected.update(merge_times={}, merge_crossings=0)  # not in v6 (nor before)
        same(PROFILES.decode(v6.encode(p)), expected)
        expected.update(event_ids={}, duplicates=0)  # not in v5 (nor before): their defaults
        same(PROFILES.decode(v5.encode(p)), expected)
        expected["sends"] = {}  # not in v4 (nor before): its default
        same(PROFILES.decode(v4.encode(p)), expected)
        for field in ("segments_key", "segments_judged_at", "segments_due"):
            expected[field] = None  # not in v2 or v3: their defaults
        same(PROFILES.decode(v3.encode(p)), expected)
        for state in expected["journeys"].values():
            for cells in state["sparse"].values():
                for cell in cells.values():
                    cell["last_reached"] = None  # not in v2: its default
        same(PROFILES.decode(v2.encode(p)), expected)
        same(PROFILES.decode(AVRO.encode(p)), through_avro(p))  # the current schema in Avro


def test_a_profile_input_of_the_released_schema_decodes_with_its_event():
    event = ev("view", values={"path": "/a", "n": 3, "x": 1.5, "ok": False, "none": None},
               request_id="r1")
    record = {"kind": "event", "profile_id": "v1", "source_partition": 2,
              "source_offset": 9, "event": EVENTS.encode(event), "visitor_id": None,
              "member_id": None, "merge_id": None, "state": None}
    v1 = AvroCodec("profile_input", "t", schema=released_schemas()["profile_input"][0])
    for writer in (v1, AVRO_INPUTS):
        decoded = INPUTS.decode(writer.encode(record))
        same(decoded, {**record, "event": event, "journey": None, "seq": None, "due": None,
                       "audience": None, "member": None, "run": None, "time": None})
    # A hand-over carries the visitor's profile in Avro: the profile codec reads it.
    state = recorded(ev("purchase", values={"amount": 10}))
    hand_over = INPUTS.decode(AVRO_INPUTS.encode({**record, "kind": "merge_in", "event": None,
                                                  "state": AVRO.encode(state)}))
    same(PROFILES.decode(hand_over["state"]), through_avro(state))


def test_a_worker_upgraded_over_a_merge_under_way_finishes_it():
    """The worker before msgpack left a member behind a merge barrier (its record and the
    inputs it holds in Avro) and the visitor's hand-over (Avro, the state in Avro) on the
    topic: the new worker applies them as if it had written them itself."""
    wire = WorkerWire(Settings().with_(app_id="t"))
    defs = load_definitions(DEFINITIONS)
    member, visitor, merge = "m1", "v1", "v1>m1@0:5"
    base = {"source_partition": 0, "visitor_id": None, "member_id": None, "merge_id": None,
            "state": None}
    views = [{**base, "kind": "event", "profile_id": member, "source_offset": 6 + k,
              "event": ev("view", T0 + k, {"path": "/search"}, event_id=f"e{k}", user=member,
                          visitor=None)} for k in range(3)]
    identify = {**base, "kind": "identify", "profile_id": member, "source_offset": 5,
                "visitor_id": visitor, "merge_id": merge,
                "event": ev("identify", T0, visitor=visitor, user=member, event_id="i")}
    visitor_state = recorded(ev("purchase", T0 - 1, {"amount": 90_000}))
    hand_over = {**base, "kind": "merge_in", "profile_id": member, "source_offset": 5,
                 "event": None, "visitor_id": visitor, "member_id": member,
                 "merge_id": merge}

    def run(encode_input, encode_profile, state):
        profile, offset = None, 0
        for record in (identify, *views):
            profile, _ = step(profile, wire.decode_input(encode_input(record)), offset, None,
                              defs, wire)
            offset += 1
        assert len(profile["buffered"]) == 4  # the identify and the views
        if encode_profile is not None:  # the changelog record the Avro worker wrote
            profile["buffered"] = [encode_input(wire.decode_input(d))
                                   for d in profile["buffered"]]
            profile = wire.decode_profile(encode_profile(profile))
        merged, sends = step(profile, wire.decode_input(encode_input(
            {**hand_over, "state": state})), offset, None, defs, wire)
        return merged, sends

    released = run(lambda r: AVRO_INPUTS.encode(INPUTS._to_avro(INPUTS._whole(r))),
                   AVRO.encode, AVRO.encode(visitor_state))
    now = run(wire.encode_input, None, wire.encode_profile(visitor_state))
    assert released[0]["counts"] == {"identify": 1, "view": 3, "purchase": 1}
    same(released[0], now[0])
    same(released[1], now[1])


# ---------------------------------------------------------------- the format


def test_the_header_is_magic_then_version():
    data = PROFILES.encode(new_profile("p"))
    assert MAGIC == b"\xcb\x6d" and data[:2] != b"\xc3\x01"
    assert data[2] == VERSION == 5


def test_a_version_1_profile_decodes_with_the_segment_fields_at_their_defaults():
    """Version 1 (the shape of schemas/released/profile.v3.avsc) has no `segments_*` fields:
    a profile it wrote reads with them null, which has its next event judge every segment."""
    import msgpack

    old = {k: v for k, v in new_profile("p").items() if not k.startswith("segments_")}
    old.update(segments=["buyers"], last_seen=5)
    profile = PROFILES.decode(MAGIC + bytes([1]) + msgpack.packb(old, use_bin_type=True))
    assert profile["segments"] == ["buyers"] and profile["last_seen"] == 5
    assert (profile["segments_key"], profile["segments_judged_at"],
            profile["segments_due"]) == (None, None, None)


def test_a_version_2_profile_decodes_with_no_send_times():
    """Version 2 (the shape of schemas/released/profile.v4.avsc) has no `sends`: a profile it
    wrote reads with none, so its caps count from its next activation on."""
    import msgpack

    old = {k: v for k, v in new_profile("p").items() if k != "sends"}
    old.update(segments=["buyers"], last_seen=5, segments_due=9)
    profile = PROFILES.decode(MAGIC + bytes([2]) + msgpack.packb(old, use_bin_type=True))
    assert profile["segments"] == ["buyers"] and profile["segments_due"] == 9
    assert profile["sends"] == {}
    assert PROFILES.decode(PROFILES.encode({**profile, "sends": {"push": [1, 2]}}))["sends"] \
        == {"push": [1, 2]}


def test_a_version_3_profile_decodes_with_no_event_ids():
    """Version 3 (the shape of schemas/released/profile.v5.avsc) has no `event_ids` nor
    `duplicates`: a profile it wrote reads with no ids kept and none dropped."""
    import msgpack

    old = {k: v for k, v in new_profile("p").items() if k not in ("event_ids", "duplicates")}
    old.update(last_seen=5, sends={"push": [1]})
    profile = PROFILES.decode(MAGIC + bytes([3]) + msgpack.packb(old, use_bin_type=True))
    assert profile["last_seen"] == 5 and profile["sends"] == {"push": [1]}
    assert (profile["event_ids"], profile["duplicates"]) == ({}, 0)
    again = PROFILES.decode(PROFILES.encode({**profile, "event_ids": {"a": 1, "b": 2},
                                             "duplicates": 3}))
    assert list(again["event_ids"].items()) == [("a", 1), ("b", 2)]  # the order applied
    assert again["duplicates"] == 3


def test_a_version_4_profile_decodes_with_no_merge_times():
    """Version 4 (the shape of schemas/released/profile.v6.avsc) has no `merge_times` nor
    `merge_crossings`: a profile it wrote reads with none."""
    import msgpack

    old = {k: v for k, v in new_profile("p").items()
           if k not in ("merge_times", "merge_crossings")}
    old.update(last_seen=5, duplicates=2)
    profile = PROFILES.decode(MAGIC + bytes([4]) + msgpack.packb(old, use_bin_type=True))
    assert profile["last_seen"] == 5 and profile["duplicates"] == 2
    assert (profile["merge_times"], profile["merge_crossings"]) == ({}, 0)
    again = PROFILES.decode(PROFILES.encode({**profile, "merge_times": {"1": 7},
                                             "merge_crossings": 3}))
    assert (again["merge_times"], again["merge_crossings"]) == ({"1": 7}, 3)


def test_the_version_is_the_shape_of_the_pinned_schemas():
    """Changing profile.avsc or profile_input.avsc changes the shape the version decodes to:
    give the new shape a new version, teach `decode` the old one, then pin the new schema."""
    for name, fingerprint in FORMAT_SCHEMAS.items():
        assert current(name).fingerprint.hex() == fingerprint, (
            f"schemas/{name}.avsc changed: bump schemas.internal.VERSION")


def _problem(codec, data) -> str:
    with pytest.raises(CodecError) as info:
        codec.decode(data)
    assert info.value.topic == codec.topic
    return info.value.problem


def test_an_unknown_version_is_refused_by_name():
    data = bytearray(PROFILES.encode(new_profile("p")))
    data[2] = 7
    assert _problem(PROFILES, bytes(data)) == (
        "cjo.Profile record in format version 7; this reader knows versions 1, 2, 3, 4 and 5 "
        "(msgpack) and Avro single-object records: a newer worker wrote it")


@pytest.mark.parametrize("data, problem", [
    (b'{"json": 1}', "neither format of cjo.Profile: first bytes 7b22"),
    (b"", "neither format of cjo.Profile: first bytes  "),
    (MAGIC, "cjo.Profile record of 2 bytes: no body after the header"),
    (HEADER + b"\xc1", "corrupt cjo.Profile msgpack body: FormatError"),
    (HEADER + b"\x80\x01", "corrupt cjo.Profile msgpack body: ExtraData"),
    (HEADER + b"\x93\x01\x02\x03", "corrupt cjo.Profile msgpack body: a list, not a map"),
    (HEADER + b"\x80", "corrupt cjo.Profile msgpack body: no field 'profile_id'"),
    (b"\xc3\x01\x00", "record of 3 bytes is shorter than the 10-byte single-object header"),
])
def test_a_record_of_neither_format_is_refused_by_name(data, problem):
    assert _problem(PROFILES, data).startswith(problem)


def test_a_record_missing_fields_decodes_with_their_defaults_and_an_unknown_kind():
    import msgpack

    data = HEADER + msgpack.packb({"kind": "teleport", "profile_id": "p",
                                   "source_partition": 1, "source_offset": 2, "extra": 1})
    record = INPUTS.decode(data)
    assert record["kind"] == "unknown" and "extra" not in record
    assert set(record) == set(INPUTS._fields) and record["event"] is None
    with pytest.raises(CodecError, match="no field"):
        INPUTS.encode({"kind": "event"})


def test_projection_gives_the_fields_from_either_format(workload):
    profiles, _ = workload
    fields = ("profile_id", "journeys", "segments")
    project = PROFILES.projection(fields)
    for p in profiles[:200]:
        for data in (PROFILES.encode(p), AVRO.encode(p)):
            got = project(data)
            for f in fields:
                same(got[f], through_avro(p)[f])


def test_codec_for_picks_msgpack_only_for_the_workers_own_records():
    assert type(codec_for("profile", "t")) is InternalCodec
    assert type(codec_for("profile_input", "t")) is ProfileInputCodec
    for name in ("event", "segment_change", "alias", "wakeup", "snapshot_manifest"):
        assert type(codec_for(name, "t")) is AvroCodec
