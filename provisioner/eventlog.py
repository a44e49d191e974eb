"""The daemon's event sink: batches events into the database (group commit).

`emit` only appends to an in-memory queue, so a DHCP answer never waits on SQL. A writer
task flushes the queue every `interval` seconds or when `batch` events are waiting. The
queue is bounded: if the database stalls, the oldest informational events are dropped
and counted (warnings and alerts are kept), so memory stays bounded under a flood.
State transitions do not depend on this path: they write their event row in the same
transaction as the state change (see lifecycle.move).

Unauthenticated writes are bounded twice (issue 14): events carrying a `group` go through
an `Aggregator` first (repeats from one source become one counter row per window), and a
retention pass deletes rows older than `retention_days` and the oldest rows beyond
`max_rows`, at start and every `prune_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from datetime import timedelta
from typing import TYPE_CHECKING

from provisioner.eventagg import Aggregator
from provisioner.events import Event, Severity, utcnow
from provisioner.tasks import cancel_and_wait

if TYPE_CHECKING:
    from provisioner.settings import EventsSettings
    from provisioner.store.repository import Store

__all__ = ["DatabaseEventSink"]

log = logging.getLogger(__name__)


class DatabaseEventSink:
    """An EventSink that writes to the `event` table in batches."""

    def __init__(
        self,
        store: Store,
        *,
        settings: EventsSettings | None = None,
        interval: float = 0.2,
        batch: int = 500,
        limit: int = 50_000,
    ) -> None:
        self._store = store
        self._settings = settings
        self._aggregator = (
            None
            if settings is None
            else Aggregator(window_s=settings.aggregate_window_s, max_keys=settings.aggregate_max_keys)
        )
        self._pruner: asyncio.Task[None] | None = None
        self._interval = interval
        self._batch = batch
        self._queue: deque[Event] = deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()

    def emit(self, event: Event) -> None:
        """Queue an event (or fold it into its group's counter); never blocks, never raises."""
        if self._aggregator is None or not event.group:
            self._enqueue(event)
            return
        for out in self._aggregator.offer(event, time.monotonic()):
            self._enqueue(out)
        self.stats["events_folded"] = self._aggregator.folded

    def _enqueue(self, event: Event) -> None:
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
        if self._settings is not None:
            self._pruner = asyncio.create_task(self._prune_loop(self._settings), name="event-retention")

    async def stop(self) -> None:
        """Flush what is queued (open counters included) and stop."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        if self._aggregator is not None:
            for summary in self._aggregator.drain():
                self._enqueue(summary)
        task, self._task = self._task, None
        await cancel_and_wait(task)
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
            if self._aggregator is not None:
                for summary in self._aggregator.due(time.monotonic()):
                    self._enqueue(summary)
            await self.flush()

    async def prune(self, settings: EventsSettings) -> int:
        """Apply the retention settings once; returns how many rows were deleted."""
        before = utcnow() - timedelta(days=settings.retention_days)
        deleted = await self._store.prune_events(before=before, max_rows=settings.max_rows)
        self.stats["events_pruned"] += deleted
        if deleted:
            log.info("event retention deleted %d rows", deleted)
        return deleted

    async def _prune_loop(self, settings: EventsSettings) -> None:
        while True:
            try:
                await self.prune(settings)
            except Exception:
                self.stats["event_prune_errors"] += 1
                log.exception("event retention failed; will retry")
            await asyncio.sleep(settings.prune_interval_s)
