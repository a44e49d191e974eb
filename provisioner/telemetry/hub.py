"""The telemetry hub: attributes what nodes send to machines, bounds it, and keeps it.

Attribution is by source address only (a node's telemetry carries no machine identity
we could trust): the address of a machine's current lease (bound, unexpired) or its
inventory address. Anything else is counted and dropped. Each source has a token bucket
(`source_rate`/`source_burst`), so one noisy or hostile address cannot flood the event
log; each machine keeps a bounded ring of kernel log lines and of recent node events.
Every accepted event also goes to the event log (`node.event`), as one readable line.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.telemetry.decode import NodeEvent
from provisioner.telemetry.kmsg import KmsgError, LogLine, LogRing, parse_line
from provisioner.telemetry.progress import InstallProgress, Reading
from provisioner.telemetry.settings import TelemetrySettings

__all__ = ["Addresses", "TelemetryHub"]

ReadingHandler = Callable[[str, Reading], Coroutine[object, object, None]]
Addresses = Mapping[str, str]
"""Source address -> machine name."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TelemetryHub:
    """Implements listeners.TelemetryHandler; one per daemon."""

    def __init__(
        self,
        settings: TelemetrySettings,
        events: EventSink,
        *,
        addresses: Callable[[], Addresses],
        refresh: Callable[[], None] | None = None,
        on_reading: ReadingHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._events = events
        self._addresses = addresses
        self._refresh = refresh
        self._on_reading = on_reading
        self._clock = clock
        self._wall = wall
        self._buckets: dict[str, _Bucket] = {}
        self._rings: dict[str, LogRing] = {}
        self._recent: dict[str, deque[str]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.progress = InstallProgress()
        self.counters: Counter[str] = Counter()

    # -- attribution and bounds -------------------------------------------------------

    def machine_for(self, source: str) -> str | None:
        """The machine `source` belongs to, or None (counted; a refresh is asked for)."""
        machine = self._addresses().get(source)
        if machine is None and self._refresh is not None:
            self._refresh()
        return machine

    def _admit(self, source: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(source)
        burst = float(self._settings.source_burst)
        if bucket is None:
            if len(self._buckets) > 65536:  # bound the table itself
                self._buckets.clear()
            bucket = self._buckets[source] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * self._settings.source_rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    # -- events ------------------------------------------------------------------------

    def node_event(self, source: str, event: object) -> bool:
        """Attribute, bound, record one node event, and pass its meaning to the lifecycle."""
        assert isinstance(event, NodeEvent)  # noqa: S101 - listeners hand only NodeEvents
        machine = self.machine_for(source)
        if machine is None:
            self.counters["events_unknown_source"] += 1
            return False
        if not self._admit(source):
            self.counters["events_rate_limited"] += 1
            return False
        self.counters["events_accepted"] += 1
        recent = self._recent.setdefault(machine, deque(maxlen=self._settings.events_per_machine))
        recent.append(event.line)
        self._events.emit(
            Event(
                kind="node.event",
                at=utcnow(),
                machine=machine,
                severity=Severity.WARNING if event.error else Severity.INFO,
                message=event.line,
                actor=f"node:{source}",
                data={"type": event.type, "id": event.event_id, "source": source},
            )
        )
        reading = self.progress.read(machine, event)
        if reading is not None and self._on_reading is not None:
            task = asyncio.get_running_loop().create_task(self._on_reading(machine, reading))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def bad_event(self, source: str, reason: str) -> None:
        """Count an undecodable request (its text never reaches the log: it is the node's)."""
        del source, reason
        self.counters["events_malformed"] += 1

    def recent_events(self, machine: str) -> list[str]:
        """The node event lines kept for `machine`, oldest first."""
        return list(self._recent.get(machine, ()))

    # -- kernel logs ---------------------------------------------------------------------

    def log_source(self, source: str) -> str | None:
        """Accept a log connection only from a known machine's address."""
        machine = self.machine_for(source)
        if machine is None:
            self.counters["log_connections_unknown_source"] += 1
        return machine

    def log_line(self, machine: str, source: str, raw: bytes) -> None:
        """Parse and keep one line in the machine's ring."""
        if not self._admit(source):
            self.counters["log_lines_rate_limited"] += 1
            return
        try:
            line = parse_line(raw, self._wall())
        except KmsgError:
            self.counters["log_lines_malformed"] += 1
            return
        self.counters["log_lines_accepted"] += 1
        self.ring(machine).append(line)
        changed = self._changed.pop(machine, None)
        if changed is not None:
            changed.set()

    def log_line_too_long(self, source: str) -> None:
        """Count a dropped over-long line."""
        del source
        self.counters["log_lines_too_long"] += 1

    def ring(self, machine: str) -> LogRing:
        """The machine's kernel log ring (created empty on first use)."""
        ring = self._rings.get(machine)
        if ring is None:
            ring = self._rings[machine] = LogRing(self._settings.log_lines)
        return ring

    async def wait_lines(self, machine: str, seen: int, timeout: float) -> list[LogLine]:
        """Lines after `seen`, waiting up to `timeout` seconds for some to arrive."""
        ring = self.ring(machine)
        if ring.total > seen:
            return ring.since(seen)
        changed = self._changed.setdefault(machine, asyncio.Event())
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return []
        return ring.since(seen)

    def machines_with_logs(self) -> Iterable[str]:
        """Machines that have a ring."""
        return list(self._rings)
