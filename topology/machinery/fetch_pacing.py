"""Fetches that wait long while the worker has nothing to do.

The worker's consumer has the broker hold each fetch until 16 KiB wait or `CJO_FETCH_WAIT_MS`
(20 ms) is over (topology.machinery.faust_fixes says why both). An idle worker then makes 50
empty fetches a second, and aiokafka encodes and decodes every assigned partition of each in
Python: 7% of a core for a worker with nothing to do (8 partitions).

So once the fetches have brought nothing for `IDLE_AFTER` seconds, the worker asks the broker to
hold a fetch for up to `IDLE_FETCH_WAIT_MS` but to answer as soon as any record arrives
(`fetch.min.bytes` 1): the first record after a quiet spell ends the fetch at once, as it would
have ended a 20 ms one at the latest. The first fetch that brings records makes the worker busy
again, so from the next request on the broker gathers records as before.

aiokafka builds each fetch request from its fetcher's `_fetch_max_wait_ms` and `_fetch_min_bytes`
and tells whether a fetch brought records (`_proc_fetch_request`'s result); both are read and
set here only, once per fetch.
"""
from __future__ import annotations

import logging
from time import monotonic
from typing import Callable

log = logging.getLogger(__name__)

IDLE_AFTER = 1.0  # seconds of fetches without records before the worker counts as idle
IDLE_FETCH_WAIT_MS = 500  # how long the broker may then hold a fetch with nothing for us


class FetchPacing:
    def __init__(self, fetcher, *, idle_after: float = IDLE_AFTER,
                 idle_wait_ms: int = IDLE_FETCH_WAIT_MS,
                 clock: Callable[[], float] = monotonic) -> None:
        self.fetcher = fetcher
        self.busy = (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes)
        self.quiet = (max(idle_wait_ms, self.busy[0]), 1)
        self.idle_after = idle_after
        self.clock = clock
        self.idle = False
        self.last_records = clock()
        self.idle_spells = 0  # times the worker went idle (shown for tests and logs)

    def install(self) -> "FetchPacing":
        fetch = self.fetcher._proc_fetch_request

        async def paced_fetch(*args, **kwargs):
            brought = await fetch(*args, **kwargs)
            self.fetched(bool(brought))
            return brought

        self.fetcher._proc_fetch_request = paced_fetch
        return self

    def fetched(self, brought_records: bool) -> None:
        """After each fetch: whether it brought records."""
        now = self.clock()
        if brought_records:
            self.last_records = now
            if self.idle:
                self._set(self.busy)
                self.idle = False
        elif not self.idle and now - self.last_records >= self.idle_after:
            self._set(self.quiet)
            self.idle = True
            self.idle_spells += 1
            log.debug("no records for %.1f s: fetches wait up to %d ms", self.idle_after,
                      self.quiet[0])

    def as_dict(self) -> dict:
        """What /stats/ shows under `fetch`."""
        return {"idle": self.idle, "wait_ms": self.fetcher._fetch_max_wait_ms,
                "min_bytes": self.fetcher._fetch_min_bytes, "idle_spells": self.idle_spells}

    def _set(self, mode: tuple[int, int]) -> None:
        self.fetcher._fetch_max_wait_ms, self.fetcher._fetch_min_bytes = mode
