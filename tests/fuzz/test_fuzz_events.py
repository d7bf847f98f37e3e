"""Hostile input events: whatever bytes, key and timestamp a producer writes to `<app>.events`,
the worker's path through them never raises.

The path is the identity step's `route` (topology/pipeline/identity.py) followed by the profile
agent (topology/pipeline/profiles.py), called here as plain functions with the worker's own codecs:

    check_size → AvroCodec("event").decode → check_event
        ├─ rejected: a dead letter with a reason code and text (encoded as DeadLetters.send
        │  writes it, with the original key and bytes)
        └─ accepted: forwarded to profile-inputs keyed by the canonical profile id (encoded,
           decoded), applied by state.processing.step with the example definitions and the
           worker's limits (an identify's merge followed through merge_out and merge_in), and
           the profile and its wake-ups written back (encoded) as the agent writes them.

The promises checked on every case:
- decode returns a record or raises CodecError with a non-empty `.problem`, nothing else;
- check_size and check_event return None or a Rejection whose code is one of DEAD_LETTER_CODES
  and whose reason is non-empty text; they never raise;
- a dead letter always encodes, and carries the original key and value;
- an accepted event is forwarded and applied without an exception, and everything the agent
  writes (profile, wake-up index entries, outputs) encodes.
"""
from __future__ import annotations

import math
from pathlib import Path

from hypothesis import event, given, note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from cjo.settings import Settings
from schemas import by_fingerprint
from schemas.codec import HEADER_SIZE, MAGIC, AvroCodec, CodecError
from state.definitions import load_definitions
from state.events import (IDENTIFY, MAX_FIELDS, MAX_ID, MAX_STRING, MIN_TIME, REASON_CODES,
                          Rejection, canonical_id, check_event, check_framing, check_size)
from state.processing import step, waits
from state.profile import Limits
from tests.fuzz.strategies import ANY_CHAR, FUZZ
from topology.machinery.wire import WorkerWire
from topology.pipeline.identity import member_at
from topology.pipeline.wakeups import index_key

# The reason codes a dead letter of the identity step may carry: the rules' documented set
# (state/events.py REASON_CODES) and the decoder's "undecodable".
DEAD_LETTER_CODES = frozenset(REASON_CODES) | {"undecodable"}

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings()
LIMITS = Limits.from_settings(SETTINGS)  # as the worker builds them
WIRE = WorkerWire(SETTINGS)
EVENTS = WIRE.codecs["events"]
DEAD = WIRE.codecs["dead-letters"]
WAKEUPS = AvroCodec("wakeup", "fuzz-wakeups-changelog")
DEFS = load_definitions((ROOT / "examples" / "definitions.yaml").read_text())
INT64 = (-(2**63), 2**63 - 1)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# ---------------------------------------------------------------- the worker's path


def decode(data: bytes) -> tuple[dict | None, str | None]:
    """The decoder's promise: (record, None), or CodecError with a problem: (None, problem)."""
    try:
        record = EVENTS.decode(data)
    except CodecError as exc:
        assert isinstance(exc.problem, str) and exc.problem, repr(exc)
        return None, exc.problem
    assert isinstance(record, dict)
    return record, None


def checked(rejection: Rejection | None) -> Rejection | None:
    """The rules' promise: None, or a known code with a reason for a person."""
    if rejection is not None:
        assert isinstance(rejection, Rejection), rejection
        assert rejection.code in DEAD_LETTER_CODES, rejection
        assert isinstance(rejection.reason, str) and rejection.reason.strip(), rejection
    return rejection


def dead_letter(key, value, timestamp, partition, offset, rejection: Rejection) -> None:
    """What DeadLetters.send writes: it must encode, and keep the original key and bytes."""
    letter = DEAD.encode({"reason_code": rejection.code, "reason": rejection.reason,
                          "source_topic": EVENTS.topic, "source_partition": partition,
                          "source_offset": offset, "key": key, "value": value,
                          "timestamp": timestamp})
    back = DEAD.decode(letter)
    assert (back["reason_code"], back["key"], back["value"]) == (rejection.code, key, value)


def forwarded(record: dict, partition: int, offset: int, alias) -> list[dict]:
    """The profile-inputs records identity.route sends for an accepted event (decoded)."""
    base = {"source_partition": partition, "source_offset": offset, "event": record,
            "visitor_id": None, "member_id": None, "merge_id": None, "state": None}
    visitor = record["visitor_id"]
    if record["name"] == IDENTIFY:
        member = record["user_id"]
        if member_at(alias, offset) == member:
            return [{**base, "kind": "event", "profile_id": member}]
        merge_id = f"{visitor}>{member}@{partition}:{offset}"
        return [{**base, "kind": "identify", "profile_id": member, "visitor_id": visitor,
                 "merge_id": merge_id},
                {**base, "kind": "merge_out", "profile_id": visitor, "event": None,
                 "visitor_id": visitor, "member_id": member, "merge_id": merge_id}]
    if record["user_id"]:
        return [{**base, "kind": "event", "profile_id": record["user_id"]}]
    target = member_at(alias, offset) or canonical_id(record)
    return [{**base, "kind": "event", "profile_id": target}]


def written(profile: dict) -> None:
    """What the agent writes after a step: the profile (profiles table) and its waits (the
    due-time index, sync_index). Both must encode, or the worker stops (fail_stop)."""
    WIRE.encode_profile(profile)
    for journey, seq, due in waits(profile):
        key = index_key(profile["profile_id"], journey, seq, due)
        key.encode()
        WAKEUPS.encode({"profile_id": profile["profile_id"], "journey": journey,
                        "seq": seq, "due": due})


def through_the_worker(key: bytes | None, value: bytes | None, timestamp: int,
                       partition: int = 0, offset: int = 7, alias=None) -> str:
    """One record of `<app>.events` through the worker; returns its fate (for statistics).
    An identify's merge (identify barrier, merge_out, merge_in) is followed to its end."""
    rejection = checked(check_size(value, SETTINGS.max_event_bytes))
    if rejection is None:
        record, problem = decode(value)
        if record is None:
            rejection = check_framing(value) or Rejection("undecodable", problem)
        else:
            rejection = checked(check_event(key, record, timestamp,
                                            max_ahead=LIMITS.max_clock_skew_ms))
    if rejection is not None:
        dead_letter(key, value, timestamp, partition, offset, rejection)
        if currently_in_test_context():
            event(f"dead letter: {rejection.code}")
        return rejection.code
    if currently_in_test_context():
        event("accepted")
        note(f"accepted: {record!r}")
    profiles: dict[str, dict] = {}
    queue = forwarded(record, partition, offset, alias)
    position = 1_000  # offsets on profile-inputs
    while queue:
        applied = WIRE.decode_input(WIRE.encode_input(queue.pop(0)))
        profile_id = applied["profile_id"]
        profile_id.encode()  # the Kafka key of the profile-inputs record
        profile, sends = step(profiles.get(profile_id), applied, position, None, DEFS, WIRE,
                              LIMITS)
        position += 1
        profiles[profile_id] = profile
        written(profile)
        for out in sends:
            out["key"].encode()
            assert isinstance(out["value"], bytes)
            if out["topic"] == "profile-inputs":  # a merge hand-over: back to the agent
                queue.append(WIRE.decode_input(out["value"]))
    return "accepted"


# ---------------------------------------------------------------- strategies
# Each draw costs hypothesis tens of microseconds, and every target runs 10,000 cases: the
# strategies below draw whole strings and byte strings (one draw each) and pick from pools,
# rather than building values from many small draws.

timestamps = st.one_of(
    st.integers(T0 - 10**9, T0 + 10**9),  # a producer's clock, now
    st.integers(0, INT64[1]),  # any CreateTime a producer may set
    st.sampled_from([-1, 0, MIN_TIME, INT64[1]]),
)
keys = st.one_of(st.none(), st.binary(max_size=12), st.sampled_from([b"v1", b"u1", b"\xff"]))
fingerprints = st.one_of(st.sampled_from(sorted(by_fingerprint())), st.binary(min_size=8,
                                                                                max_size=8))
_TWENTY = st.integers(0, 19)


def _rarely(draw) -> bool:
    """True about one time in 20. (A middle value: hypothesis favours 0 and the bounds.)"""
    return draw(_TWENTY) == 7


def _pick(draw, good, bad):
    return draw(bad if _rarely(draw) else good)


# Each field is right unless a draw says otherwise (about one time in 20), so that most
# events are accepted and go on through the profile agent, and the others break about one
# rule each: every rule is reached, and its neighbours.
good_ids = st.sampled_from(["v1", "v2", "u1", "u2", "3f2b6c1e-0d4a-4b8e-9a57-2c1d0e6f7a89",
                            "x" * MAX_ID])
bad_ids = st.one_of(st.sampled_from(["", "x" * (MAX_ID + 1), None]), st.text(ANY_CHAR,
                                                                             max_size=8))
event_ids = st.sampled_from(["e-1", "e-2", "é-3"])
good_names = st.sampled_from(["view", "purchase", "add_to_cart", "attribute", "identify",
                              "__metadata", "a" * 64, "x:y-z_1"])
bad_names = st.one_of(
    st.sampled_from(["__wakeup", "__x", "_x", "a" * 65, "bad name", "", "a\n", ":", "-", "é"]),
    st.text("abcxyz019_:-.", max_size=8), st.text(ANY_CHAR, max_size=8))
good_fields = st.sampled_from(["amount", "pref_cd", "plan", "path", "x", "f" * 64])
bad_fields = st.one_of(st.sampled_from(["", "a b", "f" * 65, "a.b"]), st.text(ANY_CHAR,
                                                                             max_size=6))
good_values = st.one_of(
    st.none(), st.booleans(), st.integers(*INT64), st.floats(allow_nan=False,
                                                             allow_infinity=False),
    st.text(ANY_CHAR, max_size=10), st.sampled_from(["/search", "premium", 13]))
bad_values = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                       st.integers(MAX_STRING - 1, MAX_STRING + 1).map(lambda n: "s" * n))
_FIELD_COUNTS = st.integers(0, 4)
many_values = st.integers(MAX_FIELDS - 1, MAX_FIELDS + 1).map(
    lambda n: {f"f{i}": i for i in range(n)})
good_times = st.integers(T0 - 10**10, T0 + 10**10)
bad_times = st.one_of(st.integers(*INT64), st.sampled_from([MIN_TIME - 1, MIN_TIME, INT64[1],
                                                            INT64[0]]))
request_ids = st.sampled_from([None, "r1", "r2"])
id_modes = st.sampled_from(["visitor", "user", "both"])


@st.composite
def events(draw, big: bool = True) -> dict:
    """Records the event schema accepts: mostly valid, each field rarely wrong (`big`: also
    at the limits of fields and string lengths)."""
    name = _pick(draw, good_names, bad_names)
    mode = "both" if name == "identify" and not _rarely(draw) else draw(id_modes)
    visitor = _pick(draw, good_ids, bad_ids) if mode != "user" else None
    user = _pick(draw, good_ids, bad_ids) if mode != "visitor" else None
    if big and _rarely(draw):
        values = draw(many_values)
    else:
        values = {_pick(draw, good_fields, bad_fields):
                  draw(bad_values if big and _rarely(draw) else good_values)
                  for _ in range(draw(_FIELD_COUNTS))}
    return {"event_id": _pick(draw, event_ids, bad_ids) or "", "name": name,
            "visitor_id": visitor, "user_id": user, "time": _pick(draw, good_times, bad_times),
            "request_id": draw(request_ids), "values": values}


@st.composite
def keyed_events(draw, big: bool = True):
    """(key, event, record timestamp): mostly keyed and timed as the rules want, rarely
    not. Kafka timestamps are 64-bit, like event times."""
    event = draw(events(big))
    right = (event["visitor_id"] or event["user_id"] or "").encode("utf-8", "surrogatepass")
    key = draw(keys) if _rarely(draw) else right
    if _rarely(draw):
        return key, event, draw(timestamps)
    late = max(INT64[0], event["time"] - LIMITS.max_clock_skew_ms)
    return key, event, late if _rarely(draw) else event["time"]


# What a mutation may insert: zig-zag varints that make a length or a map count huge,
# negative, -1 or overlong, and a few plain bytes.
INSERTS = (b"\xfe" * 9 + b"\x01", b"\xff" * 9 + b"\x01", b"\x01", b"\x80" * 10 + b"\x00",
           b"\xff" * 11, b"\x00", b"\x02", b"\x7f", b"\xc3\x01")


def mutate_bytes(data: bytes, program: bytes) -> bytes:
    """`data` changed by `program`, read two bytes (operation, argument) at a time: flip a bit,
    set a byte, cut, insert, truncate, repeat a run. The program is one draw, so that
    hypothesis spends its time running cases rather than drawing them."""
    out = bytearray(data)
    for i in range(0, len(program) - 1, 2):
        op, arg = program[i] % 6, program[i + 1]
        at = arg * (len(out) + 1) // 256
        if op == 0 and at < len(out):
            out[at] ^= 1 << (arg % 8)
        elif op == 1 and at < len(out):
            out[at] = (out[at] + arg) % 256
        elif op == 2:
            del out[at:at + 1 + arg % 8]
        elif op == 3:
            out[at:at] = INSERTS[arg % len(INSERTS)]
        elif op == 4:
            del out[at:]
        else:
            out[at:at] = out[at:at + 1 + arg % 16] * (1 + arg % 3)
    return bytes(out)


def at_the_size_limit(data: bytes) -> bytes:
    """`data` padded to one byte under, at or over the worker's size limit (by its length)."""
    size = SETTINGS.max_event_bytes - 1 + len(data) % 3
    return (data * (size // max(1, len(data)) + 1))[:size] if data else b"\0" * size


def encode(event: dict) -> bytes | None:
    """The event as a producer writes it; None for one the schema cannot carry (a lone
    surrogate is not UTF-8: no producer can send it)."""
    try:
        return EVENTS.encode(event)
    except CodecError:
        return None


# ---------------------------------------------------------------- the tests


@FUZZ
@given(value=st.tuples(_TWENTY, st.binary(max_size=300)).map(
    lambda t: None if t[0] == 7 else at_the_size_limit(t[1]) if t[0] == 11 else t[1]),
    key=keys, timestamp=timestamps)
def test_arbitrary_bytes_are_dead_lettered_or_processed_never_raised(value, key, timestamp):
    """Any value bytes (no value at all, and values at the size limit too): the worker
    dead-letters them with a known reason or processes them; decoding raises nothing but
    CodecError."""
    through_the_worker(key, value, timestamp)


@FUZZ
@given(fingerprint=fingerprints, body=st.binary(max_size=200), key=keys, timestamp=timestamps)
def test_a_valid_header_before_random_bytes_never_escapes_codec_error(fingerprint, body, key,
                                                                      timestamp):
    """The single-object marker and a fingerprint (the event's, another schema's, an unknown
    one) followed by random bytes: a record or CodecError with a problem, nothing else."""
    data = MAGIC + fingerprint + body
    assert len(MAGIC + fingerprint) == HEADER_SIZE
    through_the_worker(key, data, timestamp)


@FUZZ
@given(st.data())
def test_mutated_valid_encodings_never_escape_codec_error(data):
    """A valid encoded event with flipped, cut, inserted or repeated bytes (lengths and map
    counts become huge, negative or truncated): CodecError or a record that the rules judge,
    never another exception."""
    key, event, timestamp = data.draw(keyed_events(big=False))
    valid = encode(event)
    if valid is None:
        valid = EVENTS.encode({**event, "event_id": "e", "name": "view", "visitor_id": "v1",
                               "user_id": None, "request_id": None, "values": {}})
    value = mutate_bytes(valid, data.draw(st.binary(min_size=2, max_size=16)))
    through_the_worker(key, value, timestamp)


@FUZZ
@given(keyed=keyed_events(), alias_offset=st.one_of(st.none(), st.integers(0, 10)))
def test_the_rules_judge_every_decodable_event_with_a_known_reason(keyed, alias_offset):
    """Every record the event schema can carry, keyed and timed right or wrong: check_event
    returns None or a Rejection with a documented code and a reason (never raises), and an
    accepted event goes through the profile agent without an exception."""
    key, event, timestamp = keyed
    checked(check_event(key, event, timestamp, max_ahead=LIMITS.max_clock_skew_ms))
    value = encode(event)
    if value is None:
        return
    alias = None
    if alias_offset is not None and event["visitor_id"]:
        alias = {"entries": [{"since_offset": alias_offset, "member": "m-alias"}]}
    through_the_worker(key, value, timestamp, alias=alias)


# ---------------------------------------------------------------- open bugs, pinned


def test_an_event_at_the_end_of_time_does_not_stop_the_worker():
    """An event the rules accept is applied and written back, whatever its time: a time no
    journey wait can be added to is rejected by a rule (a dead letter), or the wait is
    capped, never a failed write."""
    end = INT64[1]
    value = EVENTS.encode({"event_id": "e1", "name": "identify", "visitor_id": "v1",
                           "user_id": "u1", "time": end, "request_id": None, "values": {}})
    through_the_worker(b"v1", value, end)


def test_a_long_beyond_64_bits_is_a_codec_error():
    """encode raises CodecError for any record the schema cannot carry."""
    try:
        EVENTS.encode({"event_id": "e", "name": "view", "visitor_id": "v", "user_id": None,
                       "time": 2**63, "request_id": None, "values": {}})
    except CodecError:
        pass
