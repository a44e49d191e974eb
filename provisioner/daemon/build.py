"""Build and wire every part of the daemon, without I/O.

Theory of operation
-------------------
`build_daemon(settings, store, events)` constructs each part with the ports it needs
(typed constructor arguments; nothing is looked up by name) and returns a `Daemon`
whose `parts()` lists them in start order:

    events -> machine-index -> web -> power -> trustd -> tftp -> dhcp -> telemetry -> reconciler

The event writer first (everyone emits), then the machine index (the hot paths consult
it), the web server (so /healthz answers while the rest start), power before the parts
that ask for it (API, reconciler), trustd, the packet services once everything they
consult exists, telemetry (the nodes' events and kernel logs; it reports install
progress to the reconciler through `node_progress_hook`), and the reconciler last, once
every signal source runs. `run.py` starts
them in this order and stops them in reverse. Nothing here opens a socket, a file or a
database connection: that happens in each part's `start()`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from provisioner.dhcp.discovery import DiscoveryRecorder
from provisioner.dhcp.service import DhcpService, TransportOptions
from provisioner.directory import MachineDirectory
from provisioner.eventlog import DatabaseEventSink
from provisioner.lifecycle import StageTimeouts
from provisioner.power.machines import MachinePower
from provisioner.power.service import PowerService
from provisioner.reconciler import Reconciler
from provisioner.settings import Settings
from provisioner.store.leases import SqlLeaseStore
from provisioner.store.repository import SqlStore
from provisioner.talos.service import TrustdPart, make_config_renderer, make_trust_checker, telemetry_suffix
from provisioner.telemetry.service import TelemetryPart, node_progress_hook
from provisioner.tftp.files import FileSource
from provisioner.tftp.server import TftpServer
from provisioner.web.app import create_app
from provisioner.web.context import WebRuntime
from provisioner.web.ipxe import IpxeRenderer
from provisioner.web.service import WebServer

__all__ = ["Daemon", "DhcpPart", "Part", "build_daemon"]


class Part(Protocol):
    """A running piece of the daemon."""

    async def start(self) -> None:
        """Open what it needs and start serving."""
        ...

    async def stop(self) -> None:
        """Stop serving and release what it opened."""
        ...


class DhcpPart:
    """The DHCP service and the recorder of unknown PXE clients, stopped together."""

    def __init__(
        self, service: DhcpService, leases: SqlLeaseStore, recorder: DiscoveryRecorder | None
    ) -> None:
        self.service = service
        self._leases = leases
        self._recorder = recorder

    async def start(self) -> None:
        """Load leases, open the sockets (on failure, the lease store is closed too)."""
        try:
            await self.service.start()
        except BaseException:
            await self._leases.close()
            raise

    async def stop(self) -> None:
        """Close the sockets, flush lease writes, then wait for discovery writes in flight."""
        await self.service.stop()
        await self._leases.close()
        if self._recorder is not None:
            await self._recorder.drain()


def _boot_script_provider(base_url: str, templates_dir: Path | None) -> Callable[[str, str], bytes | None]:
    """boot.ipxe over TFTP, for clients that fetch it there (rendered on first request)."""
    rendered: list[bytes] = []

    def provide(name: str, _client: str) -> bytes | None:
        if name.lstrip("/") != "boot.ipxe":
            return None
        if not rendered:
            rendered.append(IpxeRenderer(base_url, templates_dir).boot().encode())
        return rendered[0]

    return provide


@dataclass
class Daemon:
    """Every part, wired; `parts()` is the start order."""

    settings: Settings
    instance: str
    store: SqlStore
    events: DatabaseEventSink
    directory: MachineDirectory
    web: WebServer
    web_runtime: WebRuntime
    power: PowerService
    machine_power: MachinePower
    trustd: TrustdPart
    reconciler: Reconciler
    tftp: TftpServer | None = None
    dhcp: DhcpPart | None = None
    telemetry: TelemetryPart | None = None
    counter_sources: dict[str, Callable[[], Mapping[str, int]]] = field(default_factory=dict)

    def parts(self) -> list[tuple[str, Part]]:
        """The parts in start order (stopped in reverse)."""
        order: list[tuple[str, Part | None]] = [
            ("events", self.events),
            ("machine-index", self.directory),
            ("web", self.web),
            ("power", self.power),
            ("trustd", self.trustd),
            ("tftp", self.tftp),
            ("dhcp", self.dhcp),
            ("telemetry", self.telemetry),
            ("reconciler", self.reconciler),
        ]
        return [(name, part) for name, part in order if part is not None]


def build_daemon(settings: Settings, store: SqlStore, *, instance: str | None = None) -> Daemon:
    """Construct and wire every part (no I/O)."""
    # Stable across restarts, so a restarted daemon resumes its own machines at once
    # (claims by another name wait until they are stale).
    name = instance or settings.dhcp.instance or socket.gethostname()
    events = DatabaseEventSink(store, settings=settings.events)
    directory = MachineDirectory(store)
    counters: dict[str, Callable[[], Mapping[str, int]]] = {"events": lambda: events.stats}
    power = PowerService(settings.power, events)
    counters["power"] = power.counters
    machine_power = MachinePower(store, power, events)
    reconciler = Reconciler(
        store,
        events,
        machine_power,
        make_trust_checker(store),
        instance=name,
        timeouts=StageTimeouts.from_settings(settings.lifecycle),
        interval=settings.lifecycle.interval_s,
    )
    telemetry = None
    if settings.telemetry.enabled:
        telemetry = TelemetryPart(
            settings.telemetry,
            settings.http.host_port[0],
            events,
            machines=directory.current,
            leases=store,
            progress=node_progress_hook(reconciler),
        )
        counters["telemetry"] = telemetry.counters
    web_runtime = WebRuntime(
        settings=settings,
        store=store,
        events=events,
        instance=name,
        machines=directory.current,
        counter_sources=counters,
        power=machine_power,
        renderer=make_config_renderer(store, extra=telemetry_suffix(settings)),
        logs=telemetry.hub if telemetry is not None else None,
    )
    tftp = None
    if settings.tftp.enabled:
        source = FileSource.from_settings(
            settings.tftp, provider=_boot_script_provider(settings.http.base_url, settings.http.templates_dir)
        )
        tftp = TftpServer(settings.tftp, events, source)
        counters["tftp"] = tftp.counters
    dhcp = None
    if settings.dhcp.mode != "off":
        recorder = (
            DiscoveryRecorder(store, events, limit=settings.events.max_discovered)
            if settings.dhcp.unknown_machines != "ignore"
            else None
        )
        leases = SqlLeaseStore(store.engine)
        service = DhcpService(
            settings.dhcp,
            http_base_url=settings.http.base_url,
            leases=leases,
            machines=directory.current,
            events=events,
            discovered=recorder,
            options=TransportOptions(instance=name),
        )
        dhcp = DhcpPart(service, leases, recorder)
        counters["dhcp"] = service.counters
    return Daemon(
        settings=settings,
        instance=name,
        store=store,
        events=events,
        directory=directory,
        web=WebServer(web_runtime, app=create_app(web_runtime)),
        web_runtime=web_runtime,
        power=power,
        machine_power=machine_power,
        trustd=TrustdPart(settings.trustd, store, directory.current, events),
        reconciler=reconciler,
        tftp=tftp,
        dhcp=dhcp,
        telemetry=telemetry,
        counter_sources=counters,
    )
