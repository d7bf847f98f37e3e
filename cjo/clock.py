"""The worker's clock for journey waits. Tests stop and move it: when CJO_CLOCK_FILE names a
file, the time in milliseconds written in it is the current time (a running worker follows a
test that moves time forward); otherwise it is the wall clock.

The file is looked at on every call, and read again only when it changed: the profile agent asks
once per batch, and at a moderate flow batches of one or two inputs made the read (open, read,
close: eight system calls) a visible part of a paced event's cost. A change is seen by its
stat (inode, size, modification and change times); a value is kept only once the file is older
than `SETTLED_NS`, so that a rewrite within one tick of the filesystem's timestamps (which
could leave every stat field as it was) is never missed."""
from __future__ import annotations

import os
import time

# Longer than the coarsest timestamp granularity of common filesystems (FAT: 2 s).
SETTLED_NS = 3_000_000_000


class Clock:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get("CJO_CLOCK_FILE") or None
        self._known: tuple | None = None  # (the file's stat fields, its time) once settled

    def now_ms(self) -> int:
        if self.path:
            try:
                st = os.stat(self.path)
                seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                known = self._known
                if known is not None and known[0] == seen:
                    return known[1]
                with open(self.path) as f:
                    ms = int(f.read().strip())
            except (FileNotFoundError, ValueError):
                pass
            else:
                # Kept under the stat taken before the read: if the file was replaced in
                # between, that stat never matches again and the next call reads it anew.
                settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
                self._known = (seen, ms) if settled else None
                return ms
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
