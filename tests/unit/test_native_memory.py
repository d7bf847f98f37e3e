"""A worker gives the memory it freed back to the operating system
(topology.machinery.native_memory): glibc keeps freed blocks inside its heaps, and a periodic trim
returns their pages."""
import os

from topology.machinery import native_memory
from topology.machinery.native_memory import NativeMemory

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def test_a_trim_returns_the_pages_of_blocks_freed_inside_the_heap():
    memory = NativeMemory()
    assert memory.available  # the CI machine runs glibc
    # 64 KB blocks come from the heap (below malloc's mmap threshold); freeing every other one
    # leaves holes that free() itself never gives back, only a trim does.
    blocks = [bytearray(b"x" * (64 * 1024)) for _ in range(2000)]
    del blocks[::2]
    before = _rss()
    assert memory.trim()
    assert before - _rss() >= 32 * MB  # of the 64 MB freed
    assert memory.usage()["trims"] == 1 and memory.usage()["last_trim_ms"] >= 0
    del blocks


def test_the_number_of_arenas_can_be_capped():
    memory = NativeMemory()
    assert memory.limit_arenas(2)
    assert memory.usage()["arenas"] == 2
    assert not memory.limit_arenas(0)  # 0 keeps glibc's default
    assert memory.usage()["arenas"] == 2


def test_without_glibc_nothing_is_done(monkeypatch):
    monkeypatch.setattr(native_memory, "_glibc", lambda: None)
    memory = NativeMemory()
    assert not memory.available
    assert not memory.limit_arenas(2) and not memory.trim()
    assert memory.usage() == {"available": False, "arenas": 0, "trims": 0, "last_trim_ms": 0.0}
