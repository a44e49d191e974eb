"""The daemon's telemetry part: the hub, its two listeners and the address map.

`TelemetryPart` is built by the composition root (provisioner/daemon/build.py) with its
ports: the settings, the event sink, the machine index, a `LeaseLister` (the store) for
the address map, and a `ProgressHandler` that receives what each node's events say
about its install (`node_progress_hook` adapts the reconciler's `node_reported`). The
web layer reads the per-machine log rings from `TelemetryPart.hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from provisioner.events import EventSink
from provisioner.lifecycle import Signal
from provisioner.matching import MachineIndex
from provisioner.startup import StartupError, check_tcp_bindable, os_problem
from provisioner.tasks import cancel_and_wait
from provisioner.telemetry.hub import TelemetryHub
from provisioner.telemetry.listeners import EventSinkServer, KmsgServer
from provisioner.telemetry.progress import NodeSignal, Reading
from provisioner.telemetry.settings import TelemetrySettings, split_listen

__all__ = [
    "LeaseLister",
    "NodeReports",
    "ProgressHandler",
    "TelemetryPart",
    "address_map",
    "node_progress_hook",
]

log = logging.getLogger(__name__)

REFRESH_S = 2.0
MISS_REFRESH_MIN_S = 0.5

ProgressHandler = Callable[[str, Reading], Coroutine[Any, Any, None]]
"""Receives (machine, reading) for every node event that says something about its install."""


class LeaseLister(Protocol):
    """The store operation the address map needs (store.base.Store.leased_addresses)."""

    async def leased_addresses(self, *, now: datetime) -> dict[str, str]:
        """Address -> machine for every bound, unexpired lease that names its machine."""
        ...


class NodeReports(Protocol):
    """Who applies a node's report to the lifecycle (the reconciler)."""

    async def node_reported(self, name: str, signal: Signal | None, message: str) -> bool:
        """Move the machine on its node's report (`signal` None: the node reports an error)."""
        ...


def address_map(inventory: Mapping[str, str], leased: Mapping[str, str]) -> dict[str, str]:
    """Source address -> machine: bound, unexpired leases first, then inventory addresses."""
    return {**inventory, **leased}


_SIGNALS = {
    NodeSignal.INSTALLING: Signal.INSTALLING,
    NodeSignal.INSTALLED: Signal.INSTALLED,
    NodeSignal.BOOTED: Signal.BOOTED,
    NodeSignal.ERROR: None,  # the reconciler fails the install stage with the node's message
}


def node_progress_hook(reconciler: NodeReports) -> ProgressHandler:
    """The telemetry part's `ProgressHandler`: each reading becomes a lifecycle signal."""

    async def hook(machine: str, reading: Reading) -> None:
        try:
            await reconciler.node_reported(machine, _SIGNALS[reading.signal], reading.message)
        except Exception:
            log.exception("node report of %s not applied", machine)

    return hook


class _AddressBook:
    """Source address -> machine, reloaded every REFRESH_S and soon after a miss."""

    def __init__(self, machines: Callable[[], MachineIndex], leases: LeaseLister) -> None:
        self._machines = machines
        self._leases = leases
        self.addresses: dict[str, str] = {}
        self._last_miss = 0.0
        self._wake = asyncio.Event()

    async def reload(self) -> None:
        inventory = {m.ip: m.name for m in self._machines().all() if m.ip}
        leased = await self._leases.leased_addresses(now=datetime.now(UTC))
        fresh = address_map(inventory, leased)
        self.addresses.clear()
        self.addresses.update(fresh)

    def on_miss(self) -> None:
        # An address we do not know may be a lease granted since the last reload.
        now = asyncio.get_running_loop().time()
        if now - self._last_miss >= MISS_REFRESH_MIN_S:
            self._last_miss = now
            self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.reload()
            except Exception:
                log.exception("telemetry address map refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REFRESH_S)
            self._wake.clear()


class TelemetryPart:
    """The event sink and the kernel-log receiver (a daemon part: start, stop)."""

    def __init__(
        self,
        settings: TelemetrySettings,
        http_host: str,
        events: EventSink,
        *,
        machines: Callable[[], MachineIndex],
        leases: LeaseLister,
        progress: ProgressHandler | None = None,
    ) -> None:
        self._settings = settings
        self._book = _AddressBook(machines, leases)
        self.hub = TelemetryHub(
            settings,
            events,
            addresses=lambda: self._book.addresses,
            refresh=self._book.on_miss,
            on_reading=progress,
        )
        self._events_listen = split_listen(settings.events_listen, http_host)
        self._sink = EventSinkServer(self.hub, *self._events_listen)
        self._logs = KmsgServer(
            self.hub, *split_listen(settings.logs_listen, http_host), max_line=settings.log_line_max_bytes
        )
        self._task: asyncio.Task[None] | None = None

    def counters(self) -> Mapping[str, int]:
        """The hub's plain counters (accepted, dropped by reason)."""
        return self.hub.counters

    async def start(self) -> None:
        """Load the address map, bind both listeners (a failed bind: StartupError naming the setting)."""
        settings = self._settings
        await self._book.reload()
        events_host, events_port = self._events_listen
        # gRPC reports a failed bind from C on stderr and as a bare RuntimeError: ask first.
        check_tcp_bindable("telemetry.events_listen", settings.events_listen, events_host, events_port)
        try:
            await self._sink.start()
        except OSError as exc:
            raise StartupError("telemetry.events_listen", settings.events_listen, str(exc)) from exc
        try:
            await self._logs.start()
        except OSError as exc:
            await self._sink.stop()
            raise StartupError("telemetry.logs_listen", settings.logs_listen, os_problem(exc)) from exc
        self._task = asyncio.create_task(self._book.run(), name="telemetry-addresses")
        log.info("telemetry listening", extra={"events_port": self._sink.port, "logs_port": self._logs.port})

    async def stop(self) -> None:
        """Stop the address refresh and both listeners."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._logs.stop()
        await self._sink.stop()
