"""The test clock (cjo.clock): a file's time, read again only when the file changed."""
from __future__ import annotations

import os
import time

from cjo.clock import SETTLED_NS, Clock


def age(path, seconds: float) -> None:
    """Make the file look written `seconds` ago (its modification time)."""
    past = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(past, past))


def test_reads_the_time_written_in_the_file(tmp_path):
    clock = Clock(str(tmp_path / "clock"))
    clock.set(1_000)
    assert clock.now_ms() == 1_000
    assert clock.move(500) == 1_500


def test_follows_every_quick_change(tmp_path):
    writer, reader = Clock(str(tmp_path / "clock")), Clock(str(tmp_path / "clock"))
    for ms in range(1_000, 1_200):
        writer.set(ms)
        assert reader.now_ms() == ms


def test_a_settled_file_is_not_read_again_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "clock"
    writer, reader = Clock(str(path)), Clock(str(path))
    writer.set(5_000)
    age(path, 10)
    # utime moves the change time to now, and it cannot be set back: settled at once here.
    monkeypatch.setattr("cjo.clock.SETTLED_NS", 0)
    assert reader.now_ms() == 5_000
    monkeypatch.setattr("cjo.clock.SETTLED_NS", SETTLED_NS)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    assert reader.now_ms() == 5_000
    assert opened == []  # kept: only a stat
    writer.set(6_000)  # a new file (os.replace), even within the same timestamp tick
    assert reader.now_ms() == 6_000
    with real_open(path, "w") as f:  # rewritten in place
        f.write("7000")
    assert reader.now_ms() == 7_000


def test_without_a_file_it_is_the_wall_clock(tmp_path):
    clock = Clock(str(tmp_path / "none"))
    before = int(time.time() * 1000)
    assert before <= clock.now_ms() <= int(time.time() * 1000)
