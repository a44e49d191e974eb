"""The daemon's telemetry service: the hub, its two listeners and the address map.

`rt.services["telemetry"]` is the TelemetryHub (the API reads log rings from it; the
lifecycle hook is `rt.services["node-progress"]`, a coroutine function set by whoever
drives machine state, looked up per reading so the start order does not matter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from provisioner.lifecycle import Signal
from provisioner.startup import StartupError, check_tcp_bindable, os_problem
from provisioner.telemetry.hub import TelemetryHub
from provisioner.telemetry.listeners import EventSinkServer, KmsgServer
from provisioner.telemetry.progress import NodeSignal, Reading
from provisioner.telemetry.settings import split_listen

if TYPE_CHECKING:
    from provisioner.daemon import Runtime
    from provisioner.reconciler import Reconciler

__all__ = ["address_map", "node_progress_hook", "telemetry_service"]

log = logging.getLogger(__name__)

REFRESH_S = 2.0
MISS_REFRESH_MIN_S = 0.5


def address_map(
    inventory: Mapping[str, str], leases: list[dict[str, object]], now: datetime
) -> dict[str, str]:
    """Source address -> machine: bound, unexpired leases first, then inventory addresses."""
    out = dict(inventory)
    for lease in leases:
        machine, ip, expires = lease.get("machine"), lease.get("ip"), lease.get("expires_at")
        if not machine or not ip or lease.get("state") != "bound":
            continue
        if isinstance(expires, str) and datetime.fromisoformat(expires).replace(tzinfo=UTC) <= now:
            continue
        out[str(ip)] = str(machine)
    return out


_SIGNALS = {
    NodeSignal.INSTALLING: Signal.INSTALLING,
    NodeSignal.INSTALLED: Signal.INSTALLED,
    NodeSignal.BOOTED: Signal.BOOTED,
    NodeSignal.ERROR: None,  # the reconciler fails the install stage with the node's message
}


def node_progress_hook(reconciler: Reconciler) -> Callable[[str, Reading], Awaitable[None]]:
    """The coroutine the telemetry service calls with each reading (as `node-progress`)."""

    async def hook(machine: str, reading: Reading) -> None:
        try:
            await reconciler.node_reported(machine, _SIGNALS[reading.signal], reading.message)
        except Exception:
            log.exception("node report of %s not applied", machine)

    return hook


class _AddressBook:
    """Source address -> machine, reloaded every REFRESH_S and soon after a miss."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.addresses: dict[str, str] = {}
        self._last_miss = 0.0
        self._wake = asyncio.Event()

    async def reload(self) -> None:
        inventory = {m.ip: m.name for m in self._rt.machines().all() if m.ip}
        leases = await self._rt.store.list_leases()
        fresh = address_map(inventory, leases, datetime.now(UTC))
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


@asynccontextmanager
async def telemetry_service(rt: Runtime) -> AsyncIterator[None]:
    """Run the event sink and the kernel-log receiver while the daemon runs."""
    settings = rt.settings.telemetry
    if not settings.enabled:
        yield
        return
    book = _AddressBook(rt)

    async def on_reading(machine: str, reading: Reading) -> None:
        hook = rt.services.get("node-progress")
        if hook is not None:
            await hook(machine, reading)

    hub = TelemetryHub(
        settings, rt.events, addresses=lambda: book.addresses, refresh=book.on_miss, on_reading=on_reading
    )
    http_host = rt.settings.http.host_port[0]
    sink = EventSinkServer(hub, *split_listen(settings.events_listen, http_host))
    logs = KmsgServer(
        hub, *split_listen(settings.logs_listen, http_host), max_line=settings.log_line_max_bytes
    )
    await book.reload()
    events_host, events_port = split_listen(settings.events_listen, http_host)
    # gRPC reports a failed bind from C on stderr and as a bare RuntimeError: ask first.
    check_tcp_bindable("telemetry.events_listen", settings.events_listen, events_host, events_port)
    try:
        await sink.start()
    except OSError as exc:
        raise StartupError("telemetry.events_listen", settings.events_listen, str(exc)) from exc
    try:
        await logs.start()
    except OSError as exc:
        await sink.stop()
        raise StartupError("telemetry.logs_listen", settings.logs_listen, os_problem(exc)) from exc
    task = asyncio.create_task(book.run(), name="telemetry-addresses")
    rt.services["telemetry"] = hub
    rt.counter_sources["telemetry"] = lambda: hub.counters
    log.info("telemetry listening", extra={"events_port": sink.port, "logs_port": logs.port})
    try:
        yield
    finally:
        rt.services.pop("telemetry", None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await logs.stop()
        await sink.stop()
