"""Figures about a benchmarked process read from /proc (Linux)."""
from __future__ import annotations


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the process's peak resident set size. Not getrusage's ru_maxrss, which Linux
    carries across exec, so a child started from a big parent would report the parent's peak."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")
