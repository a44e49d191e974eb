"""The composition root: builds every part from the settings and runs them together.

Theory of operation
-------------------
`run_daemon(settings)` opens the store, starts the event writer, loads the machine index,
then enters each service's async context manager in order (web first, so /healthz answers
while the rest start; the packet services after). SIGINT/SIGTERM set a stop event; the
services are left in reverse order, then the event writer flushes and the store closes.

Each service is a function `(Runtime) -> AbstractAsyncContextManager[None]`, listed in
`SERVICES` below: this list is the one place the daemon's parts are chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from provisioner.eventlog import DatabaseEventSink
from provisioner.events import Event, EventSink, utcnow
from provisioner.matching import MachineIndex
from provisioner.settings import Settings
from provisioner.startup import database_error, prepare_state_dir
from provisioner.store.repository import Store

__all__ = ["Runtime", "run_daemon"]

log = logging.getLogger(__name__)

MACHINE_INDEX_REFRESH_S = 2.0


@dataclass
class Runtime:
    """What every service receives: settings, storage, events and the machine index."""

    settings: Settings
    store: Store
    events: EventSink
    instance: str
    stopping: asyncio.Event
    _index: MachineIndex = field(default_factory=lambda: MachineIndex([]))
    counter_sources: dict[str, Callable[[], Mapping[str, int]]] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    """Running service objects by name, for cross-service calls (e.g. the API asks `power`)."""

    def machines(self) -> MachineIndex:
        """The current machine index (replaced atomically on refresh, never mutated)."""
        return self._index

    async def refresh_machines(self) -> MachineIndex:
        """Reload the machine index from the database now."""
        records = await self.store.list_machines()
        self._index = MachineIndex([r.summary() for r in records])
        return self._index

    def counters(self) -> dict[str, dict[str, int]]:
        """Every service's counters, by service name."""
        return {name: dict(source()) for name, source in self.counter_sources.items()}


ServiceFactory = Callable[[Runtime], AbstractAsyncContextManager[None]]


def _services() -> list[tuple[str, ServiceFactory]]:
    """The daemon's parts, in start order (imported lazily so the CLI starts fast)."""
    from provisioner.services import SERVICES

    return SERVICES


async def _refresh_loop(rt: Runtime) -> None:
    while not rt.stopping.is_set():
        try:
            await rt.refresh_machines()
        except Exception:
            log.exception("machine index refresh failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rt.stopping.wait(), MACHINE_INDEX_REFRESH_S)


async def run_daemon(settings: Settings, *, ready: Callable[[Runtime], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM (or `Runtime.stopping` is set)."""
    prepare_state_dir(settings.state_dir)
    try:
        store = Store.open(settings.db_url, settings.state_dir)  # also makes state_dir 0700
    except Exception as exc:
        raise database_error(settings.database_url, settings.db_url, exc) from exc
    sink = DatabaseEventSink(store, settings=settings.events)
    stopping = asyncio.Event()
    rt = Runtime(
        settings=settings,
        store=store,
        events=sink,
        # Stable across restarts, so a restarted daemon resumes its own machines at once
        # (claims by another name wait until they are stale).
        instance=settings.dhcp.instance or socket.gethostname(),
        stopping=stopping,
    )
    rt.counter_sources["events"] = lambda: sink.stats
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        try:
            await _check_schema(store)
        except Exception as exc:
            raise database_error(settings.database_url, settings.db_url, exc) from exc
        await sink.start()
        await rt.refresh_machines()
        async with AsyncExitStack() as stack:
            for name, factory in _services():
                log.info("starting %s", name)
                await stack.enter_async_context(factory(rt))
            refresher = asyncio.create_task(_refresh_loop(rt), name="machine-index")
            sink.emit(Event(kind="daemon.started", at=utcnow(), data={"instance": rt.instance}))
            log.info("provisioner ready", extra={"instance": rt.instance})
            if ready is not None:
                ready(rt)
            await stopping.wait()
            log.info("stopping")
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        sink.emit(Event(kind="daemon.stopped", at=utcnow(), data={"instance": rt.instance}))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sink.stop()
        await store.close()


async def _check_schema(store: Store) -> None:
    """Bring the schema up to date at start (as `provisioner db upgrade` would)."""
    from provisioner.store.migrate import upgrade

    await upgrade(store.engine)
