"""Free ports on 127.0.0.1 for local brokers and workers (tests, benchmarks, fault suite).

Ports are taken below the kernel's ephemeral range, not from it (binding port 0 picks one in
it). A port in that range can be taken between our check and the server's bind by any
outgoing connection, and even by a client of the server itself: Kafka's broker connects to its
KRaft controller before the controller listens, and a connection to a port nobody listens on,
retried, can be given that same port as its own and connect to itself (TCP's simultaneous
open), which holds the port: the controller then failed with "Address already in use" and
every test of a session with it (CI, once).
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT = (32768, 60999)
LOWEST = 10000  # below: well-known and registered services' ports
TRIES = 200

_random = random.Random()  # its own: a test that seeds the module's random must not pick ours


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default if
    unknown)."""
    try:
        low, high = (int(v) for v in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT
    return low, high


def outside_ephemeral(width: int = 1) -> range:
    """Where `width` consecutive ports can start and all lie outside the ephemeral range: below
    it, else above it when it leaves too little room below."""
    low, high = ephemeral_range()
    below = range(LOWEST, low - width + 1)
    if len(below) >= 1000:
        return below
    return range(high + 1, 65536 - width + 1)


def free_port() -> int:
    return _free(1)


def free_port_pair() -> int:
    """A port p such that p and p+1 (the broker's KRaft controller) are both free."""
    return _free(2)


def _free(width: int) -> int:
    starts = outside_ephemeral(width)
    if len(starts) > 0:
        for _ in range(TRIES):
            port = _random.choice(starts)
            if all(_bindable(port + i) for i in range(width)):
                return port
    # No room outside the ephemeral range (or all of it taken): a port from inside it.
    for _ in range(TRIES):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + width - 1 <= 65535 and all(_bindable(port + i) for i in range(1, width)):
            return port
    raise RuntimeError(f"no {width} consecutive free ports on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
