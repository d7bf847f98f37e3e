"""The worker's clock for journey waits. Tests stop and move it: when CJO_CLOCK_FILE names a
file, the time in milliseconds written in it is the current time (read on every call, so a
running worker follows a test that moves time forward); otherwise it is the wall clock."""
from __future__ import annotations

import os
import time


class Clock:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get("CJO_CLOCK_FILE") or None

    def now_ms(self) -> int:
        if self.path:
            try:
                with open(self.path) as f:
                    return int(f.read().strip())
            except (FileNotFoundError, ValueError):
                pass
        return int(time.time() * 1000)

    def set(self, ms: int) -> None:
        """Stop the clock at `ms` (tests); every reader sees it at once."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            f.write(str(int(ms)))
        os.replace(tmp, self.path)

    def move(self, ms: int) -> int:
        self.set(self.now_ms() + ms)
        return self.now_ms()
