"""Handing a worker's freed native memory back to the operating system.

Most of a busy worker's resident memory is native, not Python objects (measured: ~100 MB of
live Python memory in a worker of 450-600 MB): RocksDB's reads and compactions, the Kafka
client's buffers, Avro's byte strings. glibc's malloc keeps what is freed in its arenas (up to
eight per core, one per thread that ever allocated) and returns it to the system only from the
top of each heap, so the worker's RSS grows with fragmentation, not with its state. Two
measures: fewer arenas (mallopt M_ARENA_MAX, as the MALLOC_ARENA_MAX variable would), and a
periodic `malloc_trim(0)`, which gives back the free pages inside every arena (Dask's workers
trim the same way, for the same reason). Off glibc (musl, macOS) nothing is done.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time

M_ARENA_MAX = -8  # glibc's <malloc.h>


def _glibc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # Both functions are glibc's own: another C library lacks them.
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


class NativeMemory:
    def __init__(self) -> None:
        self._libc = _glibc()
        self.trims = 0
        self.last_trim_ms = 0.0
        self.arenas = 0  # 0: glibc's default

    @property
    def available(self) -> bool:
        return self._libc is not None

    def limit_arenas(self, arenas: int) -> bool:
        """At most `arenas` malloc arenas from now on (threads started later share them)."""
        if self._libc is None or arenas <= 0:
            return False
        if not self._libc.mallopt(M_ARENA_MAX, arenas):
            return False
        self.arenas = arenas
        return True

    def trim(self) -> bool:
        """Give the free pages of every arena back to the system; True when some were."""
        if self._libc is None:
            return False
        began = time.perf_counter()
        released = bool(self._libc.malloc_trim(0))
        self.last_trim_ms = (time.perf_counter() - began) * 1000
        self.trims += 1
        return released

    def usage(self) -> dict:
        return {"available": self.available, "arenas": self.arenas, "trims": self.trims,
                "last_trim_ms": round(self.last_trim_ms, 3)}
