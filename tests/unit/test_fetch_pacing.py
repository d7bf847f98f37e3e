"""An idle worker's fetches wait long and end at the first record; the first fetch that brings
records makes them gather records again (topology.machinery.fetch_pacing)."""
import asyncio

from topology.machinery.fetch_pacing import FetchPacing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """aiokafka's fetcher as the pacing sees it: what the next request asks the broker for, and
    one fetch's outcome (whether it brought records)."""

    def __init__(self) -> None:
        self._fetch_max_wait_ms, self._fetch_min_bytes = 20, 16 * 1024
        self.outcomes: list[bool] = []

    async def _proc_fetch_request(self, assignment, node_id, request):
        return self.outcomes.pop(0)


def paced(fetcher=None, clock=None) -> tuple[FetchPacing, Fetcher, Clock]:
    fetcher, clock = fetcher or Fetcher(), clock or Clock()
    return FetchPacing(fetcher, idle_after=1.0, idle_wait_ms=500, clock=clock).install(), \
        fetcher, clock


def fetch(fetcher: Fetcher, brings: bool) -> bool:
    fetcher.outcomes.append(brings)
    return asyncio.run(fetcher._proc_fetch_request("assignment", 0, "request"))


def test_fetches_gather_records_while_records_come():
    pacing, fetcher, clock = paced()
    for _ in range(100):
        clock.now += 0.02
        assert fetch(fetcher, True) is True  # the fetch's outcome passes through
    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (20, 16 * 1024)
    assert not pacing.idle


def test_a_second_without_records_makes_fetches_wait_long_and_end_at_the_first_record():
    pacing, fetcher, clock = paced()
    for _ in range(49):  # 0.98 s of empty 20 ms fetches: not yet
        clock.now += 0.02
        assert fetch(fetcher, False) is False
    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (20, 16 * 1024)
    clock.now = 101.0  # a second after the pacing began
    fetch(fetcher, False)
    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (500, 1)
    assert pacing.idle and pacing.idle_spells == 1
    assert pacing.as_dict() == {"idle": True, "wait_ms": 500, "min_bytes": 1, "idle_spells": 1}


def test_the_first_fetch_with_records_makes_the_worker_busy_again():
    pacing, fetcher, clock = paced()
    clock.now += 5
    fetch(fetcher, False)
    assert pacing.idle
    clock.now += 0.3
    fetch(fetcher, True)
    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (20, 16 * 1024)
    assert not pacing.idle
    clock.now += 0.5  # half a second after those records: still busy
    fetch(fetcher, False)
    assert not pacing.idle
    clock.now += 0.6
    fetch(fetcher, False)
    assert pacing.idle and pacing.idle_spells == 2


def test_a_long_configured_wait_is_never_shortened_by_idling():
    fetcher = Fetcher()
    fetcher._fetch_max_wait_ms = 800  # CJO_FETCH_WAIT_MS=800
    pacing, _, clock = paced(fetcher)
    clock.now += 2
    fetch(fetcher, False)
    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (800, 1)
