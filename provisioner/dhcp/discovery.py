"""Recording unknown PXE clients as Discovered machines, off the answer path.

The DHCP core reports a `DiscoveredMachine` (limits.py) for a PXE client the inventory
does not know; `DiscoveryRecorder` turns its client-architecture code into the name
operators see and records it through the store, in a task of its own so a slow database
never delays the DHCP answer. `drain()` waits for the writes still in flight (stop).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from provisioner.dhcp.limits import DiscoveredMachine
from provisioner.events import EventSink, discovered_event

__all__ = ["ARCH_NAMES", "DiscoveredSink", "DiscoveryRecorder", "arch_name"]

log = logging.getLogger(__name__)

# RFC 4578 §2.1 / IANA "Processor Architecture Types" (option 93), as operators name them.
ARCH_NAMES = {
    0: "bios",
    6: "efi-ia32",
    7: "x86_64-efi",
    9: "x86_64-efi",
    10: "arm32-efi",
    11: "arm64-efi",
    16: "x86_64-efi-http",
}


def arch_name(arch: int | None) -> str | None:
    """The name of an option-93 architecture code (the number itself when unnamed)."""
    return None if arch is None else ARCH_NAMES.get(arch, str(arch))


class DiscoveredSink(Protocol):
    """The store operation the recorder needs."""

    async def record_discovered(
        self,
        mac: str,
        *,
        uuid: str | None = None,
        serial: str | None = None,
        arch: str | None = None,
        vendor_class: str = "",
        source: str = "",
        limit: int | None = None,
    ) -> bool:
        """Upsert a Discovered machine (the table capped at `limit`); True when it is new."""
        ...


class DiscoveryRecorder:
    """The DHCP service's `discovered` callback."""

    def __init__(self, store: DiscoveredSink, events: EventSink, *, limit: int | None = None) -> None:
        self._store = store
        self._events = events
        self._limit = limit
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, machine: DiscoveredMachine) -> None:
        """Record `machine` in the background."""
        task = asyncio.create_task(self._record(machine))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(self, machine: DiscoveredMachine) -> None:
        arch = arch_name(machine.arch)
        new = await self._store.record_discovered(
            machine.mac,
            uuid=machine.uuid,
            arch=arch,
            vendor_class=machine.vendor_class,
            source="dhcp",
            limit=self._limit,
        )
        if new:
            # DHCP clients have no trustworthy source address (0.0.0.0, broadcast): one
            # group for all of DHCP keeps a spoofed-MAC flood to a counter row.
            self._events.emit(discovered_event(machine.mac, machine.uuid, arch, "dhcp", "dhcp"))

    async def drain(self) -> None:
        """Wait for the writes in flight (errors are logged, not raised)."""
        if self._pending:
            for result in await asyncio.gather(*self._pending, return_exceptions=True):
                if isinstance(result, Exception):
                    log.warning("recording a discovered machine failed: %s", result)
