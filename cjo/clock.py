"""The worker's clock for journey waits. Tests move it: when CJO_CLOCK_FILE names a file, the
number of milliseconds in it is added to the wall clock (read on every call, so a running worker
follows a test that moves time forward)."""
from __future__ import annotations

import os
import time


class Clock:
    def __init__(self, offset_file: str | None = None) -> None:
        self.offset_file = offset_file or os.environ.get("CJO_CLOCK_FILE") or None

    def offset_ms(self) -> int:
        if not self.offset_file:
            return 0
        try:
            with open(self.offset_file) as f:
                return int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms()

    def move(self, ms: int) -> None:
        """Move the clock forward (tests): writes the new offset for every reader."""
        offset = self.offset_ms() + ms
        tmp = f"{self.offset_file}.tmp"
        with open(tmp, "w") as f:
            f.write(str(offset))
        os.replace(tmp, self.offset_file)
