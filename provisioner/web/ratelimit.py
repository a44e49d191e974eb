"""A per-source limit on refused config fetches (docs/threats.md F6): pure, `now` passed in.

Theory of operation
-------------------
Refusals on /config are a strong attack signal (token guessing, replays). Each source
address gets a fixed window of `window_s` seconds; once it has had `limit` refusals in
the current window, its further fetches are answered 429 without touching the database
until the window ends, and the first such answer raises one alert. Successful fetches
are never counted. Memory is bounded: at most `max_sources` addresses are tracked, the
stalest window is dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RefusalLimiter"]


@dataclass(slots=True)
class _Window:
    started: float
    refusals: int = 0
    alerted: bool = False


class RefusalLimiter:
    """Counts refusals per source; tells whether a source is currently blocked."""

    def __init__(self, *, limit: int = 20, window_s: float = 60.0, max_sources: int = 4096) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_sources = max_sources
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _window(self, source: str, now: float) -> _Window:
        window = self._windows.get(source)
        if window is None or now - window.started >= self.window_s:
            window = _Window(started=now)
            self._windows[source] = window
            self._windows.move_to_end(source)
            while len(self._windows) > self.max_sources:
                self._windows.popitem(last=False)
        return window

    def blocked(self, source: str, now: float) -> tuple[bool, bool]:
        """(blocked, alert): alert is True once per window, on the first blocked fetch."""
        window = self._window(source, now)
        if window.refusals < self.limit:
            return False, False
        alert = not window.alerted
        window.alerted = True
        return True, alert

    def refused(self, source: str, now: float) -> None:
        """Count one refusal from `source`."""
        self._window(source, now).refusals += 1

    def __len__(self) -> int:
        return len(self._windows)
