"""In-process counters of a worker, shown by the /stats view (Prometheus comes later)."""
from __future__ import annotations

from collections import Counter, deque


class WorkerStats:
    def __init__(self) -> None:
        self.dead_letters: Counter = Counter()  # by reason code
        self.counters: Counter = Counter()
        self.outputs: Counter = Counter()  # (topic, kind) of new output records
        self.wakeup_delays: deque[int] = deque(maxlen=10_000)  # ms, due → applied, recent

    def observe_wakeup(self, delay_ms: int) -> None:
        self.wakeup_delays.append(delay_ms)
        self.counters["wakeups_applied"] += 1

    def as_dict(self) -> dict:
        delays = sorted(self.wakeup_delays)
        return {
            "dead_letters": dict(self.dead_letters),
            "dead_letters_total": sum(self.dead_letters.values()),
            "wakeup_delay_ms": {"median": delays[len(delays) // 2], "max": delays[-1]}
            if delays else None,
            "outputs": {f"{t}/{k}": n for (t, k), n in sorted(self.outputs.items())},
            **dict(self.counters),
        }
