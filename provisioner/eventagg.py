"""Folding repeated events into counters, so unauthenticated traffic cannot grow the log.

Theory of operation
-------------------
Anyone on the machine network can make us write an event: a refused TFTP request, an
`/ipxe` call from an unknown MAC, a spoofed RRQ that times out. Written one row each, a
flood grows the database without bound (issue 14: 35k rows in ~10 s). Such events carry
a `group` (their source: a client address). For each (kind, group) the first event of a
window is written at once, so an operator sees the first occurrence without delay; the
rest of that window is folded into one summary row written when the window closes
(`data.repeated` = how many were folded). A steady flood from one source therefore costs
at most two rows per window.

A spoofed flood can use many sources. The number of open (kind, group) keys is capped
(`max_keys`); beyond it, events of that kind fold into one overflow key whose group is
"*". Memory and rows per window are both bounded: at most 2 x (max_keys + kinds) rows.

Pure: time (a monotonic float) is passed in; the event sink drives it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from provisioner.events import Event, Severity

__all__ = ["OVERFLOW_GROUP", "Aggregator"]

OVERFLOW_GROUP = "*"
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ALERT: 2}


@dataclass(slots=True)
class _Window:
    opened: float
    first: Event
    last: Event | None = None
    folded: int = 0
    severity: Severity = Severity.INFO


class Aggregator:
    """Decide which grouped events are written now and which are folded (module doc)."""

    def __init__(self, *, window_s: float, max_keys: int) -> None:
        """Windows of `window_s` seconds; at most `max_keys` (kind, group) keys open at once."""
        self.window_s = window_s
        self.max_keys = max_keys
        self._open: dict[tuple[str, str], _Window] = {}
        self.folded = 0
        """Events folded into a summary so far (a counter for /metrics)."""

    def offer(self, event: Event, now: float) -> tuple[Event, ...]:
        """What to write now for `event`: itself, a closed window's summary, or nothing."""
        if not event.group:
            return (event,)
        key = (event.kind, event.group)
        window = self._open.get(key)
        out: tuple[Event, ...] = ()
        if window is not None and now - window.opened >= self.window_s:
            out = self._close(key)
            window = None
        if window is None and len(self._open) >= self.max_keys:
            key = (event.kind, OVERFLOW_GROUP)
            window = self._open.get(key)
        if window is None:
            self._open[key] = _Window(opened=now, first=event)
            return (*out, event)
        window.folded += 1
        window.last = event
        if _RANK[event.severity] > _RANK[window.severity]:
            window.severity = event.severity
        self.folded += 1
        return out

    def due(self, now: float) -> list[Event]:
        """The summaries of every window that has closed by `now`."""
        closed = [key for key, window in self._open.items() if now - window.opened >= self.window_s]
        return [summary for key in closed for summary in self._close(key)]

    def drain(self) -> list[Event]:
        """Close every window now (the daemon is stopping)."""
        return [summary for key in list(self._open) for summary in self._close(key)]

    def _close(self, key: tuple[str, str]) -> tuple[Event, ...]:
        window = self._open.pop(key)
        last = window.last
        if last is None:
            return ()
        group = key[1]
        data = {
            **last.data,
            "repeated": window.folded,
            "group": group,
            "window_s": self.window_s,
            "first_at": window.first.at.isoformat(),
        }
        message = f"{window.folded} more from {group} within {self.window_s:g}s; last: {last.message}"
        return (
            dataclasses.replace(
                last, severity=window.severity, message=message[:1000], data=data, group=group
            ),
        )
