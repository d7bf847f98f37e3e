"""An agent applies each input partition's records in offset order, without holes: a record
after a hole stops the worker without committing (its restart reads the partition again from
the committed offset), unless the records in the hole are gone from the log."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from faust.types import TP
from topology.machinery import faust_fixes
from topology.machinery.faust_fixes import InputOrder

EVENTS = TP("events", 0)


class Signal:
    def __init__(self) -> None:
        self.receivers = []

    def connect(self, fn):
        self.receivers.append(fn)
        return fn

    def send(self, **kwargs) -> None:
        for fn in self.receivers:
            fn(None, **kwargs)


class FakeConsumer:
    def __init__(self, committed=None, earliest=0) -> None:
        self._committed_offset = dict(committed or {})
        self.earliest = earliest

    async def earliest_offsets(self, *tps):
        return {tp: self.earliest for tp in tps}


def app(committed=None, earliest=0):
    return SimpleNamespace(consumer=FakeConsumer(committed, earliest),
                           on_partitions_revoked=Signal())


def record(offset, tp=EVENTS):
    return SimpleNamespace(tp=tp, offset=offset, topic=tp.topic, partition=tp.partition)


def test_records_in_offset_order_follow_each_other():
    order = InputOrder(app(committed={EVENTS: 10}))
    assert [order.follows(EVENTS, o) for o in (10, 11, 12)] == [True, True, True]


def test_the_first_record_after_an_assignment_must_be_the_committed_one():
    order = InputOrder(app(committed={EVENTS: 10}))
    assert not order.follows(EVENTS, 37)
    assert order.follows(EVENTS, 10)


def test_without_a_committed_offset_the_first_record_starts_the_partition():
    order = InputOrder(app())
    assert order.follows(EVENTS, 5) and order.follows(EVENTS, 6)
    assert not order.follows(EVENTS, 9)


def test_a_record_read_again_after_a_seek_back_follows():
    order = InputOrder(app(committed={EVENTS: 0}))
    for o in range(5):
        assert order.follows(EVENTS, o)
    assert order.follows(EVENTS, 2)  # re-read: idempotent processing skips it
    assert order.follows(EVENTS, 3)
    assert not order.follows(EVENTS, 6)  # expected 4


def test_partitions_are_checked_independently():
    other = TP("events", 1)
    order = InputOrder(app(committed={EVENTS: 0, other: 100}))
    assert order.follows(EVENTS, 0) and order.follows(other, 100)
    assert not order.follows(other, 102)
    assert order.follows(EVENTS, 1)


def test_a_control_record_of_a_transaction_is_not_a_hole_where_producers_may_use_them():
    order = InputOrder(app(committed={EVENTS: 0}), markers=1)
    assert order.follows(EVENTS, 0) and order.follows(EVENTS, 2)  # 1 was a commit marker
    assert not order.follows(EVENTS, 5)


def test_a_revoked_partition_starts_again_from_its_committed_offset():
    fake = app(committed={EVENTS: 0})
    order = InputOrder(fake)
    assert order.follows(EVENTS, 0) and order.follows(EVENTS, 1)
    fake.on_partitions_revoked.send(revoked={EVENTS})
    fake.consumer._committed_offset[EVENTS] = 50  # another worker moved it on meanwhile
    assert not order.follows(EVENTS, 60)
    assert order.follows(EVENTS, 50)


def test_a_hole_stops_the_worker_without_committing(monkeypatch):
    stopped = []
    monkeypatch.setattr(faust_fixes, "fail_stop", lambda message, exc: stopped.append(
        (message.offset, str(exc))))
    order = InputOrder(app(committed={EVENTS: 258}))
    message = record(285)
    assert not order.follows(EVENTS, message.offset)
    asyncio.run(order.hole(EVENTS, message))
    assert stopped == [(285, "records 258..284 of events[0] were not delivered")]


def test_records_deleted_by_retention_before_they_were_read_are_reported_not_fatal(
        monkeypatch, caplog):
    monkeypatch.setattr(faust_fixes, "fail_stop", lambda message, exc: pytest.fail("stopped"))
    order = InputOrder(app(committed={EVENTS: 10}, earliest=40))
    message = record(40)
    assert not order.follows(EVENTS, message.offset)
    asyncio.run(order.hole(EVENTS, message))
    assert "records 10..39 were deleted from the log" in caplog.text
    assert order.follows(EVENTS, 41)


def test_a_batch_is_checked_record_by_record_before_it_is_applied(monkeypatch):
    stopped = []
    monkeypatch.setattr(faust_fixes, "fail_stop", lambda message, exc: stopped.append(
        message.offset))
    order = InputOrder(app(committed={EVENTS: 0}))
    asyncio.run(order.check(EVENTS, [record(0), record(1), record(2)]))
    asyncio.run(order.check(EVENTS, [record(3), record(7), record(8)]))
    assert stopped[0] == 7  # (the real fail_stop ends the worker there)
