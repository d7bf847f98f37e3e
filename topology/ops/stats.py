"""In-process counters of a worker, shown by the /stats view (Prometheus comes later)."""
from __future__ import annotations

from collections import Counter, deque


# The field that names an output record's kind, per output topic (activations have none).
OUTPUT_KINDS = {"journey-transitions": "kind", "segment-changes": "change", "activations": None}


class WorkerStats:
    def __init__(self) -> None:
        self.dead_letters: Counter = Counter()  # by reason code
        self.counters: Counter = Counter()
        self.outputs: Counter = Counter()  # (topic, kind) of new output records
        self.wakeup_delays: deque[int] = deque(maxlen=10_000)  # ms, due → applied, recent

    def count_output(self, topic: str, record: dict) -> None:
        """A new record for an output topic (merge hand-overs to profile-inputs are not); an
        activation not to be sent counts as `suppressed:<reason>` (quiet_hours,
        capped:<destination>)."""
        if topic in OUTPUT_KINDS:
            field = OUTPUT_KINDS[topic]
            if field:
                kind = record[field]
            else:
                reason = record.get("suppressed")
                kind = "activation" if reason is None else f"suppressed:{reason}"
            self.outputs[(topic, kind)] += 1

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
