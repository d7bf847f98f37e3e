"""The producer API (cjo/producer.py): it keys an event by its visitor id, else its user id,
refuses what the identity step would dead-letter with the same reason code before sending
anything, writes the single-object encoding the worker reads, and partitions keys as Java does."""
import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from cjo.producer import EventEncoder, EventProducer, EventRefused, key_of, make_event
from cjo.settings import Settings
from schemas import current
from schemas.codec import MAGIC, AvroCodec

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the record timestamp in these tests
ENCODER = EventEncoder("cjo.events")


def refused(event: dict, **kw) -> EventRefused:
    with pytest.raises(EventRefused) as caught:
        ENCODER.encode(event, timestamp_ms=NOW, **kw)
    return caught.value


def test_make_event_fills_a_fresh_id_and_the_time():
    a, b = make_event("view", visitor_id="v1"), make_event("view", visitor_id="v1")
    assert a["event_id"] != b["event_id"] and a["time"] > NOW
    assert make_event("view", visitor_id="v1", time_ms=5, event_id="e")["time"] == 5
    assert set(a) == {f["name"] for f in current("event").parsed["fields"]}


@pytest.mark.parametrize("ids, key", [
    ({"visitor_id": "v1"}, b"v1"),  # anonymous
    ({"user_id": "u1"}, b"u1"),  # a member from the back end
    ({"visitor_id": "v1", "user_id": "u1"}, b"v1"),  # a member on a device: the visitor id
])
def test_the_key_is_the_visitor_id_else_the_user_id(ids, key):
    event = make_event("view", time_ms=NOW, **ids)
    assert key_of(event) == key
    assert ENCODER.encode(event, timestamp_ms=NOW)[0] == key


def test_identify_goes_under_the_visitor_id():
    event = make_event("identify", visitor_id="v1", user_id="u1", time_ms=NOW)
    assert ENCODER.encode(event, timestamp_ms=NOW)[0] == b"v1"
    wrong = refused(event, key=b"u1")  # the member's key: what the worker dead-letters
    assert wrong.code == "wrong_key"
    assert "'u1'" in str(wrong) and "'v1'" in str(wrong) and "wrong_key" in str(wrong)


def test_refused_events_carry_the_worker_s_reason_code():
    assert refused(make_event("view", time_ms=NOW)).code == "missing_id"
    assert refused(make_event("identify", visitor_id="v1", time_ms=NOW)).code == "bad_identify"
    assert refused(make_event("page view", visitor_id="v1", time_ms=NOW)).code == "bad_name"
    assert refused(make_event("__wakeup", visitor_id="v1", time_ms=NOW)).code == "reserved_name"
    tomorrow_and_more = make_event("view", visitor_id="v1", time_ms=NOW + 86_400_001)
    assert refused(tomorrow_and_more).code == "time_in_future"
    nan = make_event("view", visitor_id="v1", time_ms=NOW, values={"price": float("nan")})
    assert refused(nan).code == "bad_value"
    big = make_event("view", visitor_id="v1", time_ms=NOW, values={"q": "x" * 2000})
    assert EventEncoder("t", max_event_bytes=4096).encode(big, timestamp_ms=NOW)
    tight = EventEncoder("t", max_event_bytes=1024)
    with pytest.raises(EventRefused, match="oversized"):
        tight.encode(big, timestamp_ms=NOW)


def test_a_dict_the_schema_cannot_carry_is_a_schema_mismatch():
    error = refused({**make_event("view", visitor_id="v1", time_ms=NOW), "values": {"a": [1]}})
    assert error.code == "schema_mismatch" and "cjo.Event" in error.reason


def test_the_value_is_the_single_object_encoding_the_worker_reads():
    event = make_event("purchase", user_id="u1", time_ms=NOW, values={"amount": 1200})
    key, value, timestamp = ENCODER.encode(event, timestamp_ms=NOW)
    assert value[:2] == MAGIC and value[2:10] == current("event").fingerprint
    assert AvroCodec("event", "cjo.events").decode(value) == event
    assert (key, timestamp) == (b"u1", NOW)


def test_the_partition_of_a_key_is_java_s_murmur2():
    # Kafka's Java client (Utils.toPositive(Utils.murmur2(key)) % 8): values from
    # kafka-clients 4.3.1 for these keys.
    java = {b"v1": 3, b"u1": 0, b"u00042": 0, b"a00007": 5}
    partitions = list(range(8))
    assert {k: DefaultPartitioner()(k, partitions, partitions) for k in java} == java


class Recorder:
    """Stands in for aiokafka's producer."""

    def __init__(self) -> None:
        self.sent = []

    async def send(self, topic, value, key=None, timestamp_ms=None):
        self.sent.append((topic, key, value, timestamp_ms))
        return asyncio.get_running_loop().create_future()


def test_send_sends_the_checked_record_and_nothing_when_refused():
    producer = EventProducer.for_app(Settings(app_id="shop"))
    producer._producer = recorder = Recorder()
    ok = make_event("view", visitor_id="v1", time_ms=NOW)

    async def run():
        await producer.send(ok, timestamp_ms=NOW)
        with pytest.raises(EventRefused, match="wrong_key"):
            await producer.send(ok, key=b"u1", timestamp_ms=NOW)
        await producer.send(ok, key=b"u1", check=False)  # a test's bad event, as given
    asyncio.run(run())
    (topic, key, value, ts), unchecked = recorder.sent
    assert (topic, key, ts) == ("shop.events", b"v1", NOW)
    assert AvroCodec("event", topic).decode(value) == ok
    assert unchecked[1] == b"u1" and unchecked[3] is None
