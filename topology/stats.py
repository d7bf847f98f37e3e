"""In-process counters of a worker, shown by the /stats view (Prometheus comes later)."""
from __future__ import annotations

from collections import Counter, deque


class WorkerStats:
    def __init__(self) -> None:
        self.dead_letters: Counter = Counter()  # by reason code
        self.counters: Counter = Counter()
        self.wakeup_delays: deque[int] = deque(maxlen=10_000)  # ms, due → applied, recent

    def observe_wakeup(self, delay_ms: int) -> None:
        self.wakeup_delays.append(delay_ms)

    def as_dict(self) -> dict:
        delays = sorted(self.wakeup_delays)
        return {
            "dead_letters": dict(self.dead_letters),
            "dead_letters_total": sum(self.dead_letters.values()),
            "wakeups_applied": len(delays),
            "wakeup_delay_ms": {"median": delays[len(delays) // 2], "max": delays[-1]}
            if delays else None,
            **dict(self.counters),
        }
