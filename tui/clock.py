"""How the TUI reads the time and shows times: one object, so tests can freeze it."""
from __future__ import annotations

import time


class Clock:
    def now(self) -> float:
        return time.time()

    def time_of_day(self, ts: float | None) -> str:
        return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"

    def date_time(self, ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"

    def age(self, since: float | None) -> str:
        """Time elapsed since ``since`` as m:ss or h:mm:ss."""
        if not since:
            return "-"
        return duration(max(0.0, self.now() - since))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
