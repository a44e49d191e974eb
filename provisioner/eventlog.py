"""The daemon's event sink: batches events into the database (group commit).

`emit` only appends to an in-memory queue, so a DHCP answer never waits on SQL. A writer
task flushes the queue every `interval` seconds or when `batch` events are waiting. The
queue is bounded: if the database stalls, the oldest informational events are dropped
and counted (warnings and alerts are kept), so memory stays bounded under a flood.
State transitions do not depend on this path: they write their event row in the same
transaction as the state change (see lifecycle.move).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque

from provisioner.events import Event, Severity
from provisioner.store.repository import Store

__all__ = ["DatabaseEventSink"]

log = logging.getLogger(__name__)


class DatabaseEventSink:
    """An EventSink that writes to the `event` table in batches."""

    def __init__(self, store: Store, *, interval: float = 0.2, batch: int = 500, limit: int = 50_000) -> None:
        self._store = store
        self._interval = interval
        self._batch = batch
        self._queue: deque[Event] = deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()

    def emit(self, event: Event) -> None:
        """Queue an event; never blocks, never raises."""
        if len(self._queue) >= self._limit:
            for index, queued in enumerate(self._queue):
                if queued.severity == Severity.INFO:
                    del self._queue[index]
                    self.stats["events_dropped"] += 1
                    break
            else:
                self.stats["events_dropped"] += 1
                return
        self._queue.append(event)
        if len(self._queue) >= self._batch:
            self._wake.set()

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="event-writer")

    async def stop(self) -> None:
        """Flush what is queued and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        """Write every queued event now."""
        while self._queue:
            chunk = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            try:
                await self._store.append_events(chunk)
                self.stats["events_written"] += len(chunk)
            except Exception:
                # Put them back and give up for now; the next flush retries.
                self._queue.extendleft(reversed(chunk))
                self.stats["event_write_errors"] += 1
                log.exception("event write failed; will retry")
                return

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()
