"""The daemon's parts, in start order: the one place they are chosen (see daemon.py).

Each entry is `(name, factory)` where the factory is an async context manager taking the
Runtime. The web server starts first so /healthz answers while the rest come up; the
packet services start after everything they consult exists; the reconciler starts last,
once every signal source is running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from provisioner.daemon import Runtime, ServiceFactory
from provisioner.dhcp.limits import DiscoveredMachine
from provisioner.dhcp.service import DhcpService, TransportOptions
from provisioner.events import discovered_event
from provisioner.lifecycle import StageTimeouts
from provisioner.power.machines import MachinePower
from provisioner.power.service import PowerService
from provisioner.reconciler import Reconciler
from provisioner.talos.service import config_service, make_trust_checker, trustd_service
from provisioner.telemetry.service import node_progress_hook, telemetry_service
from provisioner.tftp.files import FileSource
from provisioner.tftp.server import TftpServer
from provisioner.web.ipxe import IpxeRenderer
from provisioner.web.service import web_service

__all__ = [
    "SERVICES",
    "dhcp_service",
    "power_service",
    "reconciler_service",
    "stage_timeouts",
    "tftp_service",
]

log = logging.getLogger(__name__)
_ARCH_NAMES = {
    0: "bios",
    6: "efi-ia32",
    7: "x86_64-efi",
    9: "x86_64-efi",
    10: "arm32-efi",
    11: "arm64-efi",
    16: "x86_64-efi-http",
}


@asynccontextmanager
async def tftp_service(rt: Runtime) -> AsyncIterator[None]:
    """Read-only TFTP: the iPXE binaries, and boot.ipxe for clients that fetch it over TFTP."""
    if not rt.settings.tftp.enabled:
        yield
        return
    boot_script = IpxeRenderer(rt.settings.http.base_url, rt.settings.http.templates_dir).boot().encode()

    def provide(name: str, _client: str) -> bytes | None:
        return boot_script if name.lstrip("/") == "boot.ipxe" else None

    server = TftpServer(
        rt.settings.tftp, rt.events, FileSource.from_settings(rt.settings.tftp, provider=provide)
    )
    await server.start()
    rt.services["tftp"] = server
    rt.counter_sources["tftp"] = server.counters
    try:
        yield
    finally:
        rt.services.pop("tftp", None)
        await server.stop()


@asynccontextmanager
async def dhcp_service(rt: Runtime) -> AsyncIterator[None]:
    """DHCP (full, proxy, relayed) with leases in the shared database."""
    if rt.settings.dhcp.mode == "off":
        yield
        return
    pending: set[asyncio.Task[None]] = set()

    async def record(machine: DiscoveredMachine) -> None:
        arch = None if machine.arch is None else _ARCH_NAMES.get(machine.arch, str(machine.arch))
        new = await rt.store.record_discovered(
            machine.mac,
            uuid=machine.uuid,
            arch=arch,
            vendor_class=machine.vendor_class,
            source="dhcp",
            limit=rt.settings.events.max_discovered,
        )
        if new:
            # DHCP clients have no trustworthy source address (0.0.0.0, broadcast): one
            # group for all of DHCP keeps a spoofed-MAC flood to a counter row.
            rt.events.emit(discovered_event(machine.mac, machine.uuid, arch, "dhcp", "dhcp"))

    def discovered(machine: DiscoveredMachine) -> None:
        # Record unknown PXE clients without holding up the answer path.
        task = asyncio.create_task(record(machine))
        pending.add(task)
        task.add_done_callback(pending.discard)

    service = DhcpService(
        rt.settings.dhcp,
        http_base_url=rt.settings.http.base_url,
        engine_or_store=rt.store.engine,
        machines=rt.machines,
        events=rt.events,
        discovered=discovered if rt.settings.dhcp.unknown_machines != "ignore" else None,
        options=TransportOptions(instance=rt.instance),
    )
    await service.start()
    rt.services["dhcp"] = service
    rt.counter_sources["dhcp"] = service.counters
    try:
        yield
    finally:
        rt.services.pop("dhcp", None)
        await service.stop()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


@asynccontextmanager
async def power_service(rt: Runtime) -> AsyncIterator[None]:
    """BMC power: `rt.services["power"]` is a MachinePower (API and reconciler use it)."""
    service = PowerService(rt.settings.power, rt.events)
    await service.start()
    rt.services["power"] = MachinePower(rt.store, service, rt.events)
    rt.counter_sources["power"] = service.counters
    try:
        yield
    finally:
        rt.services.pop("power", None)
        await service.stop()


def stage_timeouts(rt: Runtime) -> StageTimeouts:
    """The lifecycle timeouts from the `[lifecycle]` settings."""
    s = rt.settings.lifecycle
    return StageTimeouts(
        powering_on=s.powering_on_s,
        dhcp=s.dhcp_s,
        script=s.script_s,
        config=s.config_s,
        trust=s.trust_s,
        installing=s.installing_s,
        rebooting=s.rebooting_s,
        booted=s.booted_s,
        deprovisioning=s.deprovisioning_s,
        max_attempts=s.max_attempts,
        retry_base_s=s.retry_base_s,
        retry_max_s=s.retry_max_s,
    )


@asynccontextmanager
async def reconciler_service(rt: Runtime) -> AsyncIterator[None]:
    """The reconciler that drives provisioning runs."""
    reconciler = Reconciler(
        rt.store,
        rt.events,
        rt.services["power"],
        make_trust_checker(rt.store),
        instance=rt.instance,
        timeouts=stage_timeouts(rt),
        interval=rt.settings.lifecycle.interval_s,
    )
    await reconciler.start()
    rt.services["reconciler"] = reconciler
    # The telemetry service hands every node reading here (provisioner/telemetry/service.py).
    rt.services["node-progress"] = node_progress_hook(reconciler)
    try:
        yield
    finally:
        rt.services.pop("node-progress", None)
        rt.services.pop("reconciler", None)
        await reconciler.stop()


SERVICES: list[tuple[str, ServiceFactory]] = [
    ("web", web_service),
    ("talos-config", config_service),
    ("power", power_service),
    ("trustd", trustd_service),
    ("tftp", tftp_service),
    ("dhcp", dhcp_service),
    ("telemetry", telemetry_service),
    ("reconciler", reconciler_service),
]
