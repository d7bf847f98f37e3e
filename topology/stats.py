"""In-process counters of a worker, shown by the /stats view (Prometheus comes later)."""
from __future__ import annotations

from collections import Counter


class WorkerStats:
    def __init__(self) -> None:
        self.dead_letters: Counter = Counter()  # by reason code
        self.counters: Counter = Counter()

    def as_dict(self) -> dict:
        return {
            "dead_letters": dict(self.dead_letters),
            "dead_letters_total": sum(self.dead_letters.values()),
            **dict(self.counters),
        }
