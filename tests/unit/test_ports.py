"""Local brokers' and workers' ports come from outside the kernel's ephemeral range, where no
outgoing connection (nor a client connecting to itself) can take them before the bind."""
import socket

from deploy import ports


def test_a_free_pair_lies_below_the_ephemeral_range_and_both_bind():
    low, _ = ports.ephemeral_range()
    for _ in range(20):
        port = ports.free_port_pair()
        assert ports.LOWEST <= port and port + 1 < low
        for p in (port, port + 1):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))


def test_a_taken_port_is_not_given(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        monkeypatch.setattr(ports, "outside_ephemeral", lambda width=1: range(port, port + 1))
        # The only candidate is taken: it falls back to a port the kernel gives, never `port`.
        assert ports.free_port() != port


def test_with_no_room_below_the_range_the_ports_come_from_above_it(monkeypatch, tmp_path):
    fake = tmp_path / "range"
    fake.write_text("10500\t59999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", fake)
    assert ports.outside_ephemeral(2) == range(60000, 65535)
    fake.write_text("20000 50000")
    assert ports.outside_ephemeral(2) == range(ports.LOWEST, 19999)
    fake.write_text("garbage")
    assert ports.ephemeral_range() == ports.LINUX_DEFAULT
